//go:build linux

package powercut

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tposagent/tposagent/agent/powercut/lossyfs"
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
	rnd := rand.New(rand.NewPCG(sd, 6))
	fsys := lossyfs.New(lossyfs.Options{Rand: rand.New(rand.NewPCG(sd, 7))})
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
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), outboxChildEnv+"="+filepath.Join(dir, "outbox.db"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		readDone, first := make(chan struct{}), make(chan struct{})
		var firstOnce sync.Once
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var n uint64
				mu.Lock()
				switch {
				case strings.HasPrefix(sc.Text(), "ok "):
					fmt.Sscanf(sc.Text(), "ok %d", &n)
					acked[n] = true
					firstOnce.Do(func() { close(first) })
				case strings.HasPrefix(sc.Text(), "sent "):
					fmt.Sscanf(sc.Text(), "sent %d", &n)
					sent[n] = true
				case sc.Text() == "compacted":
					compactions++
				}
				mu.Unlock()
			}
		}()
		// A random moment: mostly once the child works, sometimes while
		// it opens the file.
		if rnd.IntN(5) != 0 {
			select {
			case <-first:
			case <-readDone:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("cut %d: the child did not commit within 20 s: %s", cut, stderr.String())
			}
		}
		time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond)
		rep := fsys.Cut()
		torn += rep.TornOps
		renames += rep.PendingRenames
		cmd.Process.Kill()
		<-readDone
		cmd.Wait() // killed, or failed on EIO after the cut
		if strings.Contains(stderr.String(), "quarantined") {
			t.Fatalf("cut %d (seed %d): the outbox quarantined its file: %s", cut, sd, stderr.String())
		}
		if err := fsys.Unmount(); err != nil {
			t.Fatal(err)
		}
		names, _ := fsys.Names("")
		for _, n := range names {
			if strings.Contains(n, ".corrupt-") {
				t.Fatalf("cut %d (seed %d): quarantined: %v", cut, sd, names)
			}
		}
		if data, err := fsys.ReadFile("outbox.db"); err == nil {
			ids, err := outboxItems(data, work)
			if err != nil {
				t.Fatalf("cut %d (seed %d): %v", cut, sd, err)
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
				f, _ := os.CreateTemp("", "powercut-compact-*.db")
				f.Write(data)
				f.Close()
				t.Fatalf("cut %d (seed %d): %d acknowledged items neither in the file nor sent, e.g. %d; names %v; file kept at %s",
					cut, sd, len(missing), missing[0], names, f.Name())
			}
		}
		if err := fsys.Mount(dir); err != nil {
			t.Fatal(err)
		}
	}
	if compactions == 0 {
		t.Errorf("no compaction ran in %d cuts", cuts)
	}
	t.Logf("RESULT outbox cuts=%d items=%d sent=%d compactions=%d torn_writes=%d pending_renames_lost=%d",
		cuts, len(acked), len(sent), compactions, torn, renames)
}
