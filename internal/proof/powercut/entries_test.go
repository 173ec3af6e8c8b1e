//go:build linux

package powercut

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
	"github.com/tposagent/tposagent/outbox"
)

// entryChildEnv makes the test binary a worker that opens the outbox at
// the path (a first start, or a damaged file to quarantine), enqueues one
// record, prints "ok ID" once Enqueue returned, and waits to be killed.
const entryChildEnv = "POWERCUT_ENTRY_CHILD"

var damagedFile = bytes.Repeat([]byte("not a bbolt file "), 2000)

func entryChild() int {
	q, err := outbox.Open(outbox.Options{Path: os.Getenv(entryChildEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	it, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: "sc:1", Payload: []byte(`{"code":"Ödüyo"}`)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "enqueue:", err)
		return 1
	}
	fmt.Printf("ok %d\n", it.ID)
	select {}
}

// newFileCut runs the entry child on a fresh mount (with a damaged
// outbox.db first when damaged), cuts the power right after the first 202
// and reports what survived: whether the acknowledged record is in
// outbox.db, and the names in the directory.
func newFileCut(t *testing.T, damaged bool, fsOpts lossyfs.Options) (kept bool, names []string, aside []byte) {
	t.Helper()
	fsys := lossyfs.New(fsOpts)
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o700)
	mountOrSkip(t, fsys, dir)
	path := filepath.Join(dir, "outbox.db")
	if damaged {
		if err := os.WriteFile(path, damagedFile, 0o600); err != nil {
			t.Fatal(err)
		}
		fh, _ := os.Open(path)
		fh.Sync()
		fh.Close()
		d, _ := os.Open(dir)
		d.Sync()
		d.Close()
	}
	var id uint64
	c := startChild(t, entryChildEnv+"="+path, func(line string) bool {
		_, err := fmt.Sscanf(line, "ok %d", &id)
		return err == nil
	})
	select {
	case <-c.first:
	case <-c.readDone:
	case <-time.After(20 * time.Second):
	}
	fsys.Cut()
	c.cmd.Process.Kill()
	<-c.readDone
	c.cmd.Wait()
	if id == 0 {
		t.Fatalf("the child acknowledged nothing: %s", c.stderr.String())
	}
	if err := fsys.Unmount(); err != nil {
		t.Fatal(err)
	}
	names, _ = fsys.Names("")
	for _, n := range names {
		if strings.HasPrefix(n, "outbox.db.corrupt-") {
			aside, _ = fsys.ReadFile(n)
		}
	}
	data, err := fsys.ReadFile("outbox.db")
	if err != nil {
		return false, names, aside
	}
	ids, err := outboxItems(data, t.TempDir())
	if err != nil {
		t.Fatalf("outbox.db after the cut: %v", err)
	}
	return ids[id], names, aside
}

// The name of a new outbox file, on a first start or after a quarantine
// rename, is durable before the first 202: a power cut right after it
// keeps the record, and the damaged file stays aside under its new name.
// (bbolt does not fsync the directory of a file it creates.)
func TestNewFileNamesSurviveAPowerCut(t *testing.T) {
	for _, damaged := range []bool{false, true} {
		t.Run(map[bool]string{false: "first-start", true: "after-quarantine"}[damaged], func(t *testing.T) {
			kept, names, aside := newFileCut(t, damaged, lossyfs.Options{Tear: lossyfs.TearNone})
			if !kept {
				t.Fatalf("the record acknowledged just before the cut is gone; names after the cut: %q", names)
			}
			if damaged && !bytes.Equal(aside, damagedFile) {
				t.Fatalf("the damaged file is not aside byte for byte after the cut: names %q", names)
			}
			t.Logf("RESULT entries case=%s kept=%v names=%q", map[bool]string{false: "first-start", true: "after-quarantine"}[damaged], kept, names)
		})
	}
}

// The negative control: with directory fsyncs that do nothing, the same
// cut loses the record: the test above can see a missing directory fsync.
func TestNewFileNamesCatchLyingDirFsync(t *testing.T) {
	for _, damaged := range []bool{false, true} {
		kept, names, _ := newFileCut(t, damaged, lossyfs.Options{Tear: lossyfs.TearNone, LyingDirFsync: 1})
		if kept {
			t.Fatalf("damaged=%v: the record survived although no directory fsync took effect (names %q): the test cannot see a missing one", damaged, names)
		}
		t.Logf("caught, as it must be (damaged=%v): the record is gone, names %q", damaged, names)
	}
}
