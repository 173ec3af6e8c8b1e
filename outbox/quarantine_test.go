package outbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// filledFile writes n items to a new outbox file and closes it.
func filledFile(t *testing.T, n int) *env {
	t.Helper()
	e := newEnv(t, nil)
	payload := bytes.Repeat([]byte("x"), 900)
	for i := range n {
		if _, err := e.q.Enqueue(ctxT(t), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("k", i),
			Payload: []byte(fmt.Sprintf(`{"seq":%d,"pad":%q}`, i, payload))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	return e
}

func smashPage(t *testing.T, path string, pageSize, page int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xA5}, pageSize), int64(page*pageSize)); err != nil {
		t.Fatal(err)
	}
}

// openHandlesTo counts this process's open files that are path (Linux;
// -1 where /proc is not there).
func openHandlesTo(t *testing.T, path string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

// A file without a stored freelist and with a damaged page: bbolt's
// read-write open (and its check) walks every page to rebuild the
// freelist, on a goroutine where the damage is a panic that kills the
// process. Such a file is never handed to bbolt: it is quarantined.
func TestNoFreelistAndDamagedPageIsQuarantined(t *testing.T) {
	e := filledFile(t, 200)
	pageSize, leaves, err := outbox.LeafPagesForTest(e.path)
	if err != nil || len(leaves) < 10 {
		t.Fatalf("leaves %v: %v", leaves, err)
	}
	if err := outbox.SetNoFreelistForTest(e.path); err != nil {
		t.Fatal(err)
	}
	smashPage(t, e.path, pageSize, leaves[len(leaves)/2]) // a middle page: the cheap check does not read it
	damaged, _ := os.ReadFile(e.path)
	opts := e.opts
	opts.CheckMaxSize = -1 // the cheap check only, as for a big file
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatalf("open: %v (the damaged file must be moved aside, not block the start)", err)
	}
	defer q.Close()
	st := stats(t, q)
	if st.Quarantined == "" {
		t.Fatalf("not quarantined: %+v", st)
	}
	if moved, err := os.ReadFile(st.Quarantined); err != nil || !bytes.Equal(moved, damaged) {
		t.Fatalf("quarantined file differs from the damaged one (%d vs %d bytes): %v", len(moved), len(damaged), err)
	}
	enq(t, q, outbox.KindKasa, "after", 1, false)
}

// A panic inside bbolt's Open after it opened the file: the handle is
// closed before the file is moved aside (left open, on Windows the rename
// fails and the agent crash-loops on the file).
func TestPanicInBoltOpenClosesTheFile(t *testing.T) {
	e := filledFile(t, 20)
	before, _ := os.ReadFile(e.path)
	undo := outbox.PanicInBoltOpenForTest(1)
	defer undo()
	q, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatalf("open: %v (the file must be moved aside, not block the start)", err)
	}
	defer q.Close()
	st := stats(t, q)
	if st.Quarantined == "" {
		t.Fatalf("not quarantined after a panic in bbolt: %+v", st)
	}
	if n := openHandlesTo(t, st.Quarantined); n > 0 {
		t.Fatalf("%d handle(s) still open on the quarantined file", n)
	}
	if moved, err := os.ReadFile(st.Quarantined); err != nil || !bytes.Equal(moved, before) {
		t.Fatalf("quarantined file changed: %v", err)
	}
	enq(t, q, outbox.KindKasa, "after", 1, false)
}

// The file moved aside is the damaged file byte for byte: nothing writes
// to it first (a read-write open commits, and on Windows grows the file
// to its mapping).
func TestQuarantineKeepsTheFileByteForByte(t *testing.T) {
	e := filledFile(t, 200)
	pageSize, leaves, err := outbox.LeafPagesForTest(e.path)
	if err != nil || len(leaves) < 10 {
		t.Fatalf("leaves %v: %v", leaves, err)
	}
	smashPage(t, e.path, pageSize, leaves[len(leaves)/2])
	damaged, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	q, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer q.Close()
	st := stats(t, q)
	if st.Quarantined == "" {
		t.Fatalf("a smashed page was not caught by the check: %+v", st)
	}
	moved, err := os.ReadFile(st.Quarantined)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(moved, damaged) {
		diff := -1
		for i := range min(len(moved), len(damaged)) {
			if moved[i] != damaged[i] {
				diff = i
				break
			}
		}
		t.Fatalf("quarantined file was changed: %d bytes, damaged %d, first difference at %d", len(moved), len(damaged), diff)
	}
}

// A file that cannot be read is an error to report and retry, not
// corruption: it is not moved aside (here the path is a directory; an
// EIO or a sharing violation takes the same path).
func TestUnreadableFileIsNotQuarantined(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	q, err := outbox.Open(outbox.Options{Path: path})
	if err == nil {
		q.Close()
		t.Fatal("open of a directory succeeded")
	}
	if fi, serr := os.Stat(path); serr != nil || !fi.IsDir() {
		t.Fatalf("the unreadable path was moved or replaced (%v): open said %v", serr, err)
	}
	if n := entriesBut(t, dir, path+outbox.LockFileSuffix); n != 1 {
		t.Fatalf("directory has %d entries after a failed open, want 1 (nothing moved aside)", n)
	}
	t.Logf("open: %v (%s)", err, runtime.GOOS)
}

// With KeepTrying, a file that cannot be opened does not fail Open: the
// queue starts closed, refuses records with the reason, and opens the
// file by itself once it can, with every record it held.
func TestUnopenableFileIsOpenedLater(t *testing.T) {
	e := filledFile(t, 3)
	aside := e.path + ".aside"
	if err := os.Rename(e.path, aside); err != nil {
		t.Fatal(err)
	}
	// A directory at the path: every open fails with an I/O error.
	if err := os.Mkdir(e.path, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := e.opts
	opts.KeepTrying = true
	logs := &testrig.Buffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatalf("open with KeepTrying: %v", err)
	}
	defer q.Close()
	st := stats(t, q)
	if st.Closed == "" || !strings.Contains(st.Closed, "cannot open the outbox file") {
		t.Fatalf("stats while the file cannot be opened: %+v", st)
	}
	_, err = q.Enqueue(ctxT(t), outbox.Entry{Kind: outbox.KindSpecialCode, Key: "c1", Payload: []byte(`{"n":1}`)})
	if !errors.Is(err, outbox.ErrClosed) || !strings.Contains(err.Error(), "cannot open the outbox file") {
		t.Fatalf("enqueue while closed: %v, want ErrClosed with the reason", err)
	}
	if _, err := q.List(outbox.Pending, 0); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("list while closed: %v, want ErrClosed", err)
	}
	if n := entriesBut(t, filepath.Dir(e.path), e.path+outbox.LockFileSuffix); n != 2 {
		t.Fatalf("data dir has %d entries, want 2 (nothing moved aside or created)", n)
	}

	// The disk is back: the queue opens the file by itself. The switch
	// falls right after a failed try, so that no try (one a second) sees
	// the path empty between the two steps and makes a new file there.
	afterFailedTry(t, logs)
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, e.path); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "the file opened", 10*time.Second, func() bool { return stats(t, q).Closed == "" })
	if st := stats(t, q); st.Pending != 3 || st.LastError != "" || st.Quarantined != "" {
		t.Fatalf("after the late open: %+v, want the 3 pending records", st)
	}
	if _, err := q.Enqueue(ctxT(t), outbox.Entry{Kind: outbox.KindSpecialCode, Key: "c1", Payload: []byte(`{"n":1}`)}); err != nil {
		t.Fatalf("enqueue after the late open: %v", err)
	}
	items, err := q.List(outbox.Pending, 0)
	if err != nil || len(items) != 4 {
		t.Fatalf("list after the late open: %d items, %v; want 4", len(items), err)
	}
	if err := q.CheckIndex(); err != nil {
		t.Fatalf("index after the late open: %v", err)
	}
}

// A damaged file found by the late open is moved aside as at start.
func TestLateOpenQuarantinesADamagedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outbox.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	logs := &testrig.Buffer{}
	q, err := outbox.Open(outbox.Options{Path: path, KeepTrying: true,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("open with KeepTrying: %v", err)
	}
	defer q.Close()
	afterFailedTry(t, logs)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xA5}, 16384), 0o600); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "the late open", 10*time.Second, func() bool { return stats(t, q).Closed == "" })
	st := stats(t, q)
	if st.Quarantined == "" {
		t.Fatalf("the damaged file was not moved aside: %+v", st)
	}
	if b, err := os.ReadFile(st.Quarantined); err != nil || !bytes.Equal(b, bytes.Repeat([]byte{0xA5}, 16384)) {
		t.Fatalf("the moved file is not the damaged one byte for byte (%v)", err)
	}
	if _, err := q.Enqueue(ctxT(t), outbox.Entry{Kind: outbox.KindSpecialCode, Key: "c1", Payload: []byte(`{"n":1}`)}); err != nil {
		t.Fatalf("enqueue on the new file: %v", err)
	}
}

// Without KeepTrying (the CLI's own reads), Open still fails at once, and
// another process's lock fails Open even with it.
func TestKeepTryingDoesNotHideTheLock(t *testing.T) {
	e := newEnv(t, nil)
	opts := e.opts
	opts.KeepTrying = true
	opts.OpenTimeout = 50 * time.Millisecond
	q, err := outbox.Open(opts)
	if err == nil {
		q.Close()
		t.Fatal("a second open of a locked file succeeded with KeepTrying")
	}
	if !errors.Is(err, outbox.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

// entriesBut counts dir's entries other than the path except (the lock
// file the queue holds on Windows).
func entriesBut(t *testing.T, dir, except string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if p := filepath.Join(dir, e.Name()); p != except && !strings.HasSuffix(p, outbox.StateFileSuffix) {
			n++
		}
	}
	return n
}

// afterFailedTry waits for the queue's next failed try to open the file;
// the one after it is a second away.
func afterFailedTry(t *testing.T, logs *testrig.Buffer) {
	t.Helper()
	n := strings.Count(logs.String(), "still cannot be opened")
	testrig.WaitFor(t, "a failed try to open the file", 10*time.Second, func() bool {
		return strings.Count(logs.String(), "still cannot be opened") > n
	})
}
