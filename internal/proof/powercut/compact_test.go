//go:build linux

package powercut

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
	"github.com/tposagent/tposagent/outbox"
)

// outboxChildEnv makes the test binary an outbox user on the mount: it
// enqueues bursts of items, drains them (so that compaction, with its
// rename and directory fsync, runs often) and prints "ok ID" after each
// Enqueue returned, "sent ID" before each Delivered verdict and
// "compacted" after a drain that compacted the file.
const outboxChildEnv = "POWERCUT_OUTBOX_CHILD"

type printSender struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (s *printSender) printf(format string, a ...any) {
	s.mu.Lock()
	fmt.Fprintf(s.w, format, a...)
	s.w.Flush()
	s.mu.Unlock()
}

func (s *printSender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	s.printf("sent %d\n", it.ID)
	return outbox.Result{Verdict: outbox.Delivered}
}

func (s *printSender) Probe(ctx context.Context) error { return nil }

func outboxChild() int {
	q, err := outbox.Open(outbox.Options{Path: os.Getenv(outboxChildEnv), CompactMinSize: 48 << 10,
		RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	if st, _ := q.Stats(); st.Quarantined != "" {
		fmt.Fprintln(os.Stderr, "quarantined:", st.Quarantined)
		return 3
	}
	s := &printSender{w: bufio.NewWriter(os.Stdout)}
	ctx := context.Background()
	go q.Run(ctx, s)
	pad := strings.Repeat("Ğ", 700)
	compactions := 0
	for burst := 0; ; burst++ {
		for i := range 20 {
			payload := fmt.Sprintf(`{"n":%d,"pad":%q}`, i, pad)
			it, err := q.Enqueue(ctx, outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprintf("k%d-%d", burst, i), Payload: []byte(payload)})
			if err != nil {
				fmt.Fprintln(os.Stderr, "enqueue:", err)
				return 1
			}
			s.printf("ok %d\n", it.ID)
		}
		for {
			st, err := q.Stats()
			if err != nil {
				fmt.Fprintln(os.Stderr, "stats:", err)
				return 1
			}
			if st.Pending == 0 {
				if st.Compactions > compactions {
					compactions = st.Compactions
					s.printf("compacted\n")
				}
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// outboxItems lists the ids in the items bucket of a copy of the file
// (the layout is in the outbox's package documentation).
func outboxItems(data []byte, dir string) (map[uint64]bool, error) {
	if len(data) == 0 {
		// Created, but cut before bbolt's first sync: no item can be in it
		// (and a read-only bbolt cannot open an empty file).
		return map[uint64]bool{}, nil
	}
	p := filepath.Join(dir, "check.db")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return nil, err
	}
	db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	ids := map[uint64]bool{}
	err = db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("check: %w", err)
		}
		if b := tx.Bucket([]byte("items")); b != nil {
			return b.ForEach(func(k, _ []byte) error {
				ids[binary.BigEndian.Uint64(k)] = true
				return nil
			})
		}
		return nil
	})
	return ids, err
}

// TestOutboxCompactionPowerCuts cuts the power under the outbox package
// itself while it compacts often (a small CompactMinSize the agent's
// config does not expose): every item whose Enqueue returned must be in
// the surviving file or have been handed to the sender.
func TestOutboxCompactionPowerCuts(t *testing.T) {
	cuts := envInt(t, "TPOSAGENT_POWERCUTS", 40)
	sd := seed(t)
	t.Logf("seed=%d cuts=%d", sd, cuts)
	if failure := runCompactionCuts(t, cuts, sd, lossyfs.Options{Rand: rand.New(rand.NewPCG(sd, 7))}); failure != "" {
		t.Fatal(failure)
	}
}

// runCompactionCuts returns the first broken promise, or "".
func runCompactionCuts(t *testing.T, cuts int, sd uint64, fsOpts lossyfs.Options) string {
	control := fsOpts.LyingFsync > 0 || fsOpts.LyingDirFsync > 0
	rnd := rand.New(rand.NewPCG(sd, 6))
	fsys := lossyfs.New(fsOpts)
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o700)
	mountOrSkip(t, fsys, dir)
	work := t.TempDir()
	var (
		mu          sync.Mutex
		acked, sent = map[uint64]bool{}, map[uint64]bool{}
		compactions int
		torn        int
		renames     int
	)
	for cut := 1; cut <= cuts; cut++ {
		// Every fourth cut waits for a compaction first, so that cuts
		// after one are in the sample however slow the machine is (a
		// loaded machine may not reach one within the random delay).
		compacted := make(chan struct{})
		var once sync.Once
		c := startChild(t, outboxChildEnv+"="+filepath.Join(dir, "outbox.db"), func(line string) (ack bool) {
			var n uint64
			mu.Lock()
			defer mu.Unlock()
			switch {
			case strings.HasPrefix(line, "ok "):
				fmt.Sscanf(line, "ok %d", &n)
				acked[n] = true
				return true
			case strings.HasPrefix(line, "sent "):
				fmt.Sscanf(line, "sent %d", &n)
				sent[n] = true
			case line == "compacted":
				compactions++
				once.Do(func() { close(compacted) })
			}
			return false
		})
		if cut%4 == 0 && !control {
			select {
			case <-compacted:
			case <-time.After(60 * time.Second):
				t.Errorf("cut %d: no compaction within 60 s", cut)
			}
		}
		rep := c.cut(t, cut, rnd, 400, fsys)
		torn += rep.TornOps
		renames += rep.PendingRenames
		if strings.Contains(c.stderr.String(), "quarantined") {
			return fmt.Sprintf("cut %d (seed %d): the outbox quarantined its file: %s", cut, sd, c.stderr.String())
		}
		if err := fsys.Unmount(); err != nil {
			t.Fatal(err)
		}
		names, _ := fsys.Names("")
		for _, n := range names {
			if strings.Contains(n, ".corrupt-") {
				return fmt.Sprintf("cut %d (seed %d): quarantined: %v", cut, sd, names)
			}
		}
		// A file that is gone holds nothing: every acknowledged item not
		// yet sent is then missing.
		ids := map[uint64]bool{}
		data, err := fsys.ReadFile("outbox.db")
		if err == nil {
			if ids, err = outboxItems(data, work); err != nil {
				return fmt.Sprintf("cut %d (seed %d): %v", cut, sd, err)
			}
		}
		mu.Lock()
		var missing []uint64
		for id := range acked {
			if !ids[id] && !sent[id] {
				missing = append(missing, id)
			}
		}
		mu.Unlock()
		if len(missing) > 0 {
			kept := "(not kept: a negative control)"
			if !control && data != nil {
				f, _ := os.CreateTemp("", "powercut-compact-*.db")
				f.Write(data)
				f.Close()
				kept = f.Name()
			}
			return fmt.Sprintf("cut %d (seed %d): %d acknowledged items neither in the file nor sent, e.g. %d; names %v; file kept at %s",
				cut, sd, len(missing), missing[0], names, kept)
		}
		if err := fsys.Mount(dir); err != nil {
			t.Fatal(err)
		}
	}
	if compactions == 0 && !control {
		t.Errorf("no compaction ran in %d cuts", cuts)
	}
	fst := fsys.Stats()
	t.Logf("RESULT outbox cuts=%d items=%d sent=%d compactions=%d torn_writes=%d pending_entries_lost=%d dir_fsyncs=%d",
		cuts, len(acked), len(sent), compactions, torn, renames, fst.DirFsyncs)
	return ""
}
