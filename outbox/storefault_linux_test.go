package outbox_test

// Storage faults under a running queue, on real failing storage: the
// lossy FUSE filesystem answering EIO (internal/testrig/lossyfs) and
// files truncated or scribbled under the mapping.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
	"github.com/tposagent/tposagent/outbox"
)

func fsStats(t *testing.T, fsys *lossyfs.Remote) lossyfs.Stats {
	t.Helper()
	st, err := fsys.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// gatedSender counts sends per item id; the first send of gateID
// waits for gate to close.
type gatedSender struct {
	mu      sync.Mutex
	sends   map[uint64]int
	total   int
	gateID  uint64
	gate    chan struct{}
	started chan struct{} // closed when gateID's first send starts
	once    sync.Once
}

func newGatedSender() *gatedSender {
	return &gatedSender{sends: map[uint64]int{}, gate: make(chan struct{}), started: make(chan struct{})}
}

func (s *gatedSender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	s.mu.Lock()
	s.sends[it.ID]++
	s.total++
	first := it.ID == s.gateID && s.sends[it.ID] == 1
	s.mu.Unlock()
	if first {
		s.once.Do(func() { close(s.started) })
		select {
		case <-s.gate:
		case <-ctx.Done():
			return outbox.Result{Verdict: outbox.Retry, Reason: "stopped"}
		}
	}
	return outbox.Result{Verdict: outbox.Delivered}
}

func (s *gatedSender) Probe(context.Context) error { return nil }

func (s *gatedSender) counts() (total int, per map[uint64]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	per = make(map[uint64]int, len(s.sends))
	for k, v := range s.sends {
		per[k] = v
	}
	return s.total, per
}

func code(t *testing.T, q *outbox.Queue, i int) outbox.Item {
	t.Helper()
	p, _ := json.Marshal(map[string]any{"integration_id": fmt.Sprintf("sc-%d", i), "code": i})
	it, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprintf("sc-%d", i), Payload: p})
	if err != nil {
		t.Fatalf("enqueue %d: %v", i, err)
	}
	return it
}

// runUntilGated runs q with s and waits until s's gated send has started.
func runUntilGated(t *testing.T, q *outbox.Queue, s *gatedSender) (stop func()) {
	t.Helper()
	stop = testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return q.Run(ctx, s) })
	select {
	case <-s.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first record was never sent")
	}
	return stop
}

// waitDrained polls q's stats until done says so, for at most 30 s after
// the disk came back; a timeout reports the stats, the sends and logs.
func waitDrained(t *testing.T, q *outbox.Queue, s *gatedSender, logs *testrig.Buffer, done func(outbox.Stats) bool) outbox.Stats {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := q.Stats()
		if err == nil && done(st) {
			return st
		}
		if time.Now().After(deadline) {
			total, _ := s.counts()
			var l string
			if logs != nil {
				l = logs.String()
			}
			t.Fatalf("the queue did not drain in 30 s after the disk came back: %d sends; stats %+v (err %v)\n%s", total, st, err, l)
		}
	}
}

// TestUnrecordedResultNotSentAgain: the commit that records a delivery
// fails (the disk answers EIO) while the server is up. The item is not
// handed out again (its key stays busy), no other send starts while the
// results cannot be recorded, status says so, the commit is retried on a
// backoff, and once the disk answers again every record has been sent
// exactly once. (The code this replaced released the item after the
// failed commit and sent it again at once, thousands of times a second.)
func TestUnrecordedResultNotSentAgain(t *testing.T) {
	fsys, dir := lossyfs.MountForTest(t)
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(dir, "outbox.db"), Concurrency: 4, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() }) // before the unmount
	first := code(t, q, 0)
	var ids []uint64
	for i := 1; i <= 20; i++ {
		ids = append(ids, code(t, q, i).ID)
	}
	s := newGatedSender()
	s.gateID = first.ID
	// Only the first record may go before the disk fails.
	stop := runUntilGated(t, q, s)
	// The disk fails while the send is at the server; the others of
	// the first batch of sends are already recorded or not.
	if err := fsys.SetFailure(lossyfs.Failure{Writes: true}); err != nil {
		t.Fatal(err)
	}
	close(s.gate)
	// Once the first commit of the result has failed, no send starts.
	testrig.WaitFor(t, "the result to be held", 10*time.Second, func() bool {
		st, err := q.Stats()
		return err == nil && st.Unrecorded >= 1
	})
	// Sends handed out before the first commit failed have started by
	// the time the commit failed once more.
	failedBefore := fsStats(t, fsys).FailedWrites
	testrig.WaitFor(t, "one more failed commit", 10*time.Second, func() bool {
		return fsStats(t, fsys).FailedWrites >= failedBefore+1
	})
	_, before := s.counts()

	// Several commits of the result fail (each a write refused with EIO).
	failedBefore = fsStats(t, fsys).FailedWrites
	testrig.WaitFor(t, "four failed commits of the delivery result", 20*time.Second, func() bool {
		return fsStats(t, fsys).FailedWrites >= failedBefore+4
	})
	st, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Unrecorded < 1 || !strings.HasPrefix(st.UnrecordedError, "delivery results cannot be recorded: ") ||
		!strings.HasPrefix(st.LastError, "delivery results cannot be recorded: ") || !strings.Contains(st.LastError, "input/output error") {
		t.Fatalf("status while results cannot be recorded: unrecorded=%d %q last_error=%q", st.Unrecorded, st.UnrecordedError, st.LastError)
	}
	total, per := s.counts()
	if per[first.ID] != 1 {
		t.Fatalf("the record whose result could not be recorded was sent %d times (%d sends in all)", per[first.ID], total)
	}
	for id, n := range per {
		if n != before[id] && id != first.ID {
			t.Fatalf("item %d was sent while results could not be recorded (%d sends, %d before the disk failed)", id, n, before[id])
		}
	}
	if st.Pending < 21-len(before)+1 {
		t.Fatalf("pending %d while the disk fails, want at least %d", st.Pending, 21-len(before)+1)
	}

	// The disk answers again: the result is recorded, the rest goes, each once.
	if err := fsys.SetFailure(lossyfs.Failure{}); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, q, s, nil, func(st outbox.Stats) bool { return st.Pending == 0 })
	stop()
	total, per = s.counts()
	for _, id := range append(ids, first.ID) {
		if per[id] != 1 {
			t.Errorf("item %d sent %d times, want once", id, per[id])
		}
	}
	st, _ = q.Stats()
	if st.Unrecorded != 0 || st.UnrecordedError != "" || strings.HasPrefix(st.LastError, "delivery results") {
		t.Errorf("status after recovery: unrecorded=%d %q last_error=%q", st.Unrecorded, st.UnrecordedError, st.LastError)
	}
	t.Logf("RESULT unrecorded-result sends=%d records=21 failed_writes=%d", total, fsStats(t, fsys).FailedWrites)
}

// TestUnrecordedResultAtClose: the process ends while a delivery result
// cannot be recorded. The record is still pending after the restart, and
// its id is at or below the last id at start, so the agent's sender
// treats its outcome as unknown (a special code is looked up first).
func TestUnrecordedResultAtClose(t *testing.T) {
	fsys, dir := lossyfs.MountForTest(t)
	opts := outbox.Options{Path: filepath.Join(dir, "outbox.db")}
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() }) // before the unmount
	it := code(t, q, 1)
	s := newGatedSender()
	s.gateID = it.ID
	stop := runUntilGated(t, q, s)
	if err := fsys.SetFailure(lossyfs.Failure{Writes: true}); err != nil {
		t.Fatal(err)
	}
	close(s.gate)
	testrig.WaitFor(t, "the result to be unrecorded", 10*time.Second, func() bool {
		st, err := q.Stats()
		return err == nil && st.Unrecorded == 1
	})
	stop()
	_ = q.Close()
	if err := fsys.SetFailure(lossyfs.Failure{}); err != nil {
		t.Fatal(err)
	}
	q2, err := outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q2.Close() })
	q = q2
	last, err := q.LastID()
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := q.Get(it.ID)
	if err != nil || last < it.ID {
		t.Fatalf("after the restart: item %+v (%v), last id %d: want it pending at or below the last id", got, err, last)
	}
	if total, _ := s.counts(); total != 1 {
		t.Fatalf("%d sends, want 1", total)
	}
}

// TestRefusedCommitReopensFile: the commit that records a delivery is
// written whole, but its last fsync (the one after the meta page) fails,
// as on a disk whose writeback fails: the queue is told the commit
// failed while the file holds it. The queue must not carry on from what
// bbolt and its counters hold in memory: it opens the file again (closed,
// saying why, while the fsync still fails), reads the counters back, and
// once the disk is sound every record has been sent once and the pending
// count is 0. (Carrying on from memory, the run that found this left a
// pending count of 1 for ever with nothing in the file, or bbolt panicked
// with "page 2 already freed".)
func TestRefusedCommitReopensFile(t *testing.T) {
	fsys, dir := lossyfs.MountForTest(t)
	var logs testrig.Buffer
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(dir, "outbox.db"), Concurrency: 1, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() }) // before the unmount
	// No commit but the ones this test arranges.
	q.StopJanitorForTest()
	first := code(t, q, 0)
	ids := []uint64{first.ID, code(t, q, 1).ID, code(t, q, 2).ID}
	s := newGatedSender()
	s.gateID = first.ID
	stop := runUntilGated(t, q, s)
	// The commit of its result: the pages and their fsync, then the meta
	// page, whose fsync fails.
	if err := fsys.SetFailure(lossyfs.Failure{FsyncPath: "outbox.db", FsyncsAllowed: 1}); err != nil {
		t.Fatal(err)
	}
	close(s.gate)
	var st outbox.Stats
	testrig.WaitFor(t, "the refused commit to close the queue", 10*time.Second, func() bool {
		st, err = q.Stats()
		return err == nil && st.Closed != "" && st.Unrecorded >= 1
	})
	if !strings.HasPrefix(st.LastError, "delivery results cannot be recorded: cannot open the outbox file: ") || !strings.Contains(st.LastError, "input/output error") {
		t.Fatalf("status while the file cannot be opened again: last_error %q closed %q", st.LastError, st.Closed)
	}
	if err := fsys.SetFailure(lossyfs.Failure{}); err != nil {
		t.Fatal(err)
	}
	st = waitDrained(t, q, s, &logs, func(st outbox.Stats) bool { return st.Pending == 0 && st.Delivered == 3 })
	stop()
	_, per := s.counts()
	for _, id := range ids {
		if per[id] != 1 {
			t.Errorf("item %d sent %d times, want once", id, per[id])
		}
	}
	if st.Closed != "" || st.Unrecorded != 0 {
		t.Errorf("after recovery: closed %q, unrecorded %d", st.Closed, st.Unrecorded)
	}
	if !strings.Contains(logs.String(), "OUTBOX COMMIT REFUSED BY THE DISK") || !strings.Contains(logs.String(), "outbox file opened after a failed commit") {
		t.Errorf("the log does not say the file was opened again after the refused commit:\n%s", logs.String())
	}
	t.Logf("RESULT refused-commit records=3 sends=%d pending=%d delivered=%d failed_fsyncs=%d", len(per), st.Pending, st.Delivered, fsStats(t, fsys).FailedFsyncs)
}

// TestIOErrorAtOpenNotQuarantined: reads of the file's pages fail with
// EIO (a flaky sector) at start. That is an I/O error: reported and
// retried with the file in place, never a quarantine, and the queue opens
// with every record once the disk reads again. cheap: the check that
// reads pages through the mapping (a fault, turned into a panic), full:
// the check that reads every page first.
func TestIOErrorAtOpenNotQuarantined(t *testing.T) {
	for _, tc := range []struct {
		name     string
		checkMax int64
	}{{"cheap check through the mapping", -1}, {"full check", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			fsys, dir := lossyfs.MountForTest(t)
			path := filepath.Join(dir, "outbox.db")
			opts := outbox.Options{Path: path, CheckMaxSize: tc.checkMax}
			q, err := outbox.Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { q.Close() })
			const n = 300
			pad := strings.Repeat("x", 900)
			for i := range n {
				p, _ := json.Marshal(map[string]any{"i": i, "pad": pad})
				if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprintf("k%d", i), Payload: p}); err != nil {
					t.Fatal(err)
				}
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			ps, root, freelist, err := outbox.MetaPagesForTest(path)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			// Every page but the two meta pages, the root and the
			// freelist fails: the precheck's own reads succeed, and
			// bbolt's first read of a bucket's page is an EIO.
			var bad []lossyfs.Range
			for pg := int64(2); pg*int64(ps) < fi.Size(); pg++ {
				if uint64(pg) == root || uint64(pg) == freelist {
					continue
				}
				bad = append(bad, lossyfs.Range{From: pg * int64(ps), To: (pg + 1) * int64(ps)})
			}
			if err := fsys.SetFailure(lossyfs.Failure{ReadPath: "outbox.db", BadRanges: bad}); err != nil {
				t.Fatal(err)
			}
			var logs testrig.Buffer
			opts.KeepTrying = true
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			q2, err := outbox.Open(opts)
			if err != nil {
				t.Fatalf("open with unreadable pages: %v", err)
			}
			t.Cleanup(func() { q2.Close() })
			q = q2
			st, err := q.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Quarantined != "" {
				t.Fatalf("an I/O error quarantined the file: %s\n%s", st.Quarantined, logs.String())
			}
			if st.Closed == "" || !(strings.Contains(st.Closed, "input/output error") || strings.Contains(st.Closed, "fault")) {
				t.Fatalf("status while the file cannot be read: closed=%q last_error=%q", st.Closed, st.LastError)
			}
			if fsStats(t, fsys).FailedReads == 0 {
				t.Fatal("no read failed: the test did not reach the disk")
			}
			names, _ := filepath.Glob(path + ".corrupt-*")
			if len(names) > 0 {
				t.Fatalf("file moved aside: %v", names)
			}
			if err := fsys.SetFailure(lossyfs.Failure{}); err != nil {
				t.Fatal(err)
			}
			testrig.WaitFor(t, "the queue to open once the disk reads again", 15*time.Second, func() bool {
				st, err := q.Stats()
				return err == nil && st.Closed == "" && st.Pending == n
			})
			if st, _ := q.Stats(); st.Quarantined != "" {
				t.Fatalf("quarantined after all: %s", st.Quarantined)
			}
		})
	}
}

// TestEmptiedFileWhileStopped: the file is truncated to 0 bytes, deleted
// or replaced by an older copy while the agent is stopped. The queue
// says so (status, an error log line) and goes on with the file found.
// (The code this replaced took an empty file as a new queue, silently.)
func TestEmptiedFileWhileStopped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, path, older string)
		missing int
	}{
		{"truncated to 0", func(t *testing.T, path, _ string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}, 6},
		// Cut to its two meta pages: every page they point to is gone.
		// (Cut in half, the records' pages were in the first half in 1
		// run of 10, and nothing was missing.)
		{"shorter (cut to its meta pages)", func(t *testing.T, path, _ string) {
			if err := os.Truncate(path, 2*int64(os.Getpagesize())); err != nil {
				t.Fatal(err)
			}
		}, 6},
		{"deleted", func(t *testing.T, path, _ string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, 6},
		{"an older copy put back", func(t *testing.T, path, older string) {
			if err := os.Rename(older, path); err != nil {
				t.Fatal(err)
			}
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "outbox.db")
			opts := outbox.Options{Path: path}
			q, err := outbox.Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 4 {
				code(t, q, i)
			}
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			older := filepath.Join(dir, "older.db")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(older, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if q, err = outbox.Open(opts); err != nil {
				t.Fatal(err)
			}
			code(t, q, 4)
			code(t, q, 5)
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, path, older)

			var logs testrig.Buffer
			opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			q, err = outbox.Open(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			st, err := q.Stats()
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("the outbox file was emptied or replaced while the agent was stopped: %d records that were accepted are not in it", tc.missing)
			if st.Emptied != want || st.LastError != want {
				t.Fatalf("status: emptied=%q last_error=%q, want %q", st.Emptied, st.LastError, want)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "OUTBOX FILE EMPTIED OR REPLACED") {
				t.Fatalf("no error log line:\n%s", logs.String())
			}
			// A shorter file is damaged: kept aside, byte for byte.
			if cut := strings.HasPrefix(tc.name, "shorter"); cut != (st.Quarantined != "") {
				t.Fatalf("quarantined %q for %s", st.Quarantined, tc.name)
			}
			// Once said, the file found is the queue: a restart is quiet.
			code(t, q, 9)
			if err := q.Close(); err != nil {
				t.Fatal(err)
			}
			q3, err := outbox.Open(outbox.Options{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			defer q3.Close()
			if st, _ := q3.Stats(); st.Emptied != "" {
				t.Fatalf("the warning came back after a restart: %q", st.Emptied)
			}
		})
	}
}

// TestFileFaultsWhileRunning: the file is truncated to 0 bytes, or random
// bytes are written over its pages, while the queue runs and sends.
// Reads through the mapping then fault or meet garbage: the process stays
// up (a crash would end this test binary), status shows an error, and the
// queue opens the file again the full way and takes records again.
func TestFileFaultsWhileRunning(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"truncated to 0", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		// Random bytes over every page but the two meta pages: the live
		// tree is somewhere in there. (64 KiB in the middle of the file
		// could land on free pages only, which nothing reads: no error to
		// show, 2 runs in 60.)
		{"random bytes after the meta pages", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			const metaPages = 8192 // two pages of 4 KiB (the queue's page size here)
			junk := make([]byte, max(fi.Size()-metaPages, 0))
			_, _ = rand.Read(junk)
			if _, err := f.WriteAt(junk, metaPages); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "outbox.db")
			var logs testrig.Buffer
			q, err := outbox.Open(outbox.Options{Path: path, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			pad := strings.Repeat("y", 2000)
			for i := range 200 {
				p, _ := json.Marshal(map[string]any{"i": i, "pad": pad})
				if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprintf("k%d", i), Payload: p, Coalesce: true}); err != nil {
					t.Fatal(err)
				}
			}
			testrig.WaitFor(t, "the state beside the file", 10*time.Second, func() bool {
				_, err := os.Stat(path + ".state")
				return err == nil
			})
			// A sender that always fails keeps reading and writing the file.
			s := &failingSender{}
			stop := testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return q.Run(ctx, s) })
			defer stop()
			testrig.WaitFor(t, "sends", 10*time.Second, func() bool { return s.n.Load() > 20 })
			tc.damage(t, path)
			// Keep using the queue: stats, enqueues, sends.
			sawError := false
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				st, err := q.Stats()
				if err != nil || st.LastError != "" && !strings.HasPrefix(st.LastError, "transient") ||
					st.Quarantined != "" || st.Emptied != "" || st.UnrecordedError != "" || st.Closed != "" {
					sawError = true
				}
				p, _ := json.Marshal(map[string]any{"after": true})
				_, eerr := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "after", Payload: p, Coalesce: true})
				if sawError && eerr == nil && err == nil && st.Closed == "" {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			st, err := q.Stats()
			if err != nil || !sawError {
				t.Fatalf("after the damage: stats %+v, %v; an error shown: %v\n%s", st, err, sawError, logs.String())
			}
			p, _ := json.Marshal(map[string]any{"final": true})
			if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "final", Payload: p, Coalesce: true}); err != nil {
				t.Fatalf("the queue does not take records again after the damage: %v\n%s", err, logs.String())
			}
			t.Logf("after the damage: pending=%d quarantined=%q emptied=%q last_error=%q", st.Pending, st.Quarantined, st.Emptied, st.LastError)
			if tc.name == "truncated to 0" && !strings.Contains(st.Emptied, "while the agent ran") && st.Quarantined == "" {
				t.Errorf("truncation while running not reported: emptied=%q quarantined=%q", st.Emptied, st.Quarantined)
			}
		})
	}
}

type failingSender struct{ n atomic.Int64 }

func (s *failingSender) Send(context.Context, outbox.Item) outbox.Result {
	s.n.Add(1)
	return outbox.Result{Verdict: outbox.Retry, Reason: "transient: server down"}
}
func (s *failingSender) Probe(context.Context) error { return nil }
