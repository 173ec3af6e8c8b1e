package outbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
	"github.com/tposagent/tposagent/outbox/outboxtest"
)

type env struct {
	q     *outbox.Queue
	clock *clocktest.Clock
	s     *outboxtest.Sender
	path  string
	opts  outbox.Options
}

func newEnv(t *testing.T, mod func(*outbox.Options)) *env {
	t.Helper()
	clock := clocktest.New(time.Time{})
	opts := outbox.Options{
		Path:  filepath.Join(t.TempDir(), "outbox.db"),
		Clock: clock,
		Rand:  func() float64 { return 0.5 },
	}
	if mod != nil {
		mod(&opts)
	}
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := q.CheckIndex(); err != nil && !errors.Is(err, outbox.ErrClosed) {
			t.Errorf("index: %v", err)
		}
		_ = q.Close()
	})
	return &env{q: q, clock: clock, s: outboxtest.NewSender(), path: opts.Path, opts: opts}
}

// run starts the sender loop; the returned func stops it and waits.
func (e *env) run(t *testing.T) func() {
	t.Helper()
	return testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return e.q.Run(ctx, e.s) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func stats(t *testing.T, q *outbox.Queue) outbox.Stats {
	t.Helper()
	st, err := q.Stats()
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st
}

func enq(t *testing.T, q *outbox.Queue, kind outbox.Kind, key string, seq int, coalesce bool) outbox.Item {
	t.Helper()
	p, _ := json.Marshal(map[string]any{"key": key, "seq": seq})
	it, err := q.Enqueue(context.Background(), outbox.Entry{Kind: kind, Key: key, Payload: p, Coalesce: coalesce})
	if err != nil {
		t.Fatalf("enqueue %s/%d: %v", key, seq, err)
	}
	return it
}

func seqOf(t *testing.T, it outbox.Item) int {
	var p struct{ Seq int }
	if err := json.Unmarshal(it.Payload, &p); err != nil {
		t.Fatalf("payload: %v", err)
	}
	return p.Seq
}

func TestEnqueueSurvivesReopenByteExact(t *testing.T) {
	e := newEnv(t, nil)
	payload := json.RawMessage(`{ "name" : "Kasa Çağrı İŞĞÜÖ ı ş", "price1":"1260.50" }`)
	it, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "kasa:42", Payload: payload, Coalesce: true})
	if err != nil {
		t.Fatal(err)
	}
	if it.ID == 0 || it.IdempotencyKey == "" || it.Created.IsZero() {
		t.Fatalf("item not filled in: %+v", it)
	}
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: "x", Key: "k", Payload: []byte("1")}); !errors.Is(err, outbox.ErrClosed) {
		t.Fatalf("enqueue after close: %v, want ErrClosed", err)
	}
	q, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	items, err := q.List(outbox.Pending, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || !bytes.Equal(items[0].Payload, payload) || items[0].IdempotencyKey != it.IdempotencyKey ||
		items[0].Key != "kasa:42" || items[0].Kind != outbox.KindKasa || !items[0].Created.Equal(it.Created) {
		t.Fatalf("after reopen got %+v, want payload %s and key %s", items, payload, it.IdempotencyKey)
	}
	st := stats(t, q)
	if st.Pending != 1 || st.Enqueued != 1 {
		t.Fatalf("stats after reopen: %+v", st)
	}
}

func TestEnqueueValidates(t *testing.T) {
	e := newEnv(t, nil)
	for _, en := range []outbox.Entry{
		{Kind: "", Key: "k", Payload: []byte(`{}`)},
		{Kind: outbox.KindKasa, Key: "", Payload: []byte(`{}`)},
		{Kind: outbox.KindKasa, Key: "k", Payload: []byte(`{"a":`)},
		{Kind: outbox.KindKasa, Key: strings.Repeat("k", 2000), Payload: []byte(`{}`)},
	} {
		if _, err := e.q.Enqueue(context.Background(), en); !errors.Is(err, outbox.ErrInvalidEntry) {
			t.Errorf("enqueue %+v: %v, want ErrInvalidEntry", en.Kind, err)
		}
	}
}

func TestFIFOPerKeyParallelAcrossKeys(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.Concurrency = 3 })
	keys := []string{"a", "b", "c", "d", "e"}
	for seq := range 4 {
		for _, k := range keys {
			enq(t, e.q, outbox.KindSpecialCode, k, seq, false)
		}
	}
	var mu sync.Mutex
	active := map[string]bool{}
	maxActive, overlapSameKey := 0, false
	release := make(chan struct{})
	e.s.Hook = func(ctx context.Context, it outbox.Item) *outbox.Result {
		mu.Lock()
		if active[it.Key] {
			overlapSameKey = true
		}
		active[it.Key] = true
		maxActive = max(maxActive, len(active))
		mu.Unlock()
		<-release
		mu.Lock()
		delete(active, it.Key)
		mu.Unlock()
		return nil
	}
	e.run(t)
	testrig.WaitFor(t, "3 sends in flight", 15*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(active) == 3 })
	close(release)
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.InFlight == 0 })
	if overlapSameKey {
		t.Error("two items of one key were in flight at once")
	}
	if maxActive != 3 {
		t.Errorf("max parallel sends %d, want 3", maxActive)
	}
	for _, k := range keys {
		calls := e.s.CallsFor(k)
		if len(calls) != 4 {
			t.Fatalf("key %s: %d sends, want 4", k, len(calls))
		}
		for i, c := range calls {
			if got := seqOf(t, c.Item); got != i {
				t.Errorf("key %s: send %d carried seq %d", k, i, got)
			}
		}
	}
	if st := stats(t, e.q); st.Delivered != 20 || !st.Online || st.LastSuccess.IsZero() {
		t.Errorf("stats %+v", st)
	}
}

func TestCoalescing(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 5 {
		enq(t, e.q, outbox.KindKasa, "kasa:1", i, true)
	}
	for i := range 3 {
		enq(t, e.q, outbox.KindSpecialCode, "sc:1", i, false)
	}
	st := stats(t, e.q)
	if st.Pending != 4 || st.Coalesced != 4 || st.Enqueued != 8 {
		t.Fatalf("after enqueue: pending %d coalesced %d enqueued %d, want 4 4 8", st.Pending, st.Coalesced, st.Enqueued)
	}
	// The in-flight item is never replaced; pending ones behind it are.
	gate := make(chan struct{})
	first := true
	var fmu sync.Mutex
	e.s.Hook = func(ctx context.Context, it outbox.Item) *outbox.Result {
		fmu.Lock()
		wait := first && it.Key == "kasa:1"
		if wait {
			first = false
		}
		fmu.Unlock()
		if wait {
			<-gate
		}
		return nil
	}
	e.run(t)
	testrig.WaitFor(t, "kasa:1 in flight", 15*time.Second, func() bool {
		items, _ := e.q.List(outbox.Pending, 0)
		for _, it := range items {
			if it.Key == "kasa:1" && it.InFlight {
				return true
			}
		}
		return false
	})
	enq(t, e.q, outbox.KindKasa, "kasa:1", 10, true)
	enq(t, e.q, outbox.KindKasa, "kasa:1", 11, true)
	close(gate)
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.InFlight == 0 })
	var seqs []int
	for _, c := range e.s.CallsFor("kasa:1") {
		seqs = append(seqs, seqOf(t, c.Item))
	}
	if fmt.Sprint(seqs) != "[4 11]" {
		t.Errorf("kasa:1 sends %v, want [4 11]", seqs)
	}
	if n := len(e.s.CallsFor("sc:1")); n != 3 {
		t.Errorf("special codes sent %d, want 3 (never coalesced)", n)
	}
}

func TestRetryClasses(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.RetryBase = 2 * time.Second; o.RetryMax = 8 * time.Second })
	ctx := ctxT(t)
	a := enq(t, e.q, outbox.KindKasa, "a", 0, false)
	e.s.ScriptID(a.ID, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 503"}, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 500"},
		outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 502"}, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 502"})
	e.run(t)
	// Full jitter with Rand=0.5: delays 1s, 2s, 4s, then capped 8s*0.5=4s.
	start := e.clock.Now()
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		if err := e.s.WaitCalls(ctx, i+1); err != nil {
			t.Fatal(err)
		}
		var it outbox.Item
		testrig.WaitFor(t, "attempt recorded", 15*time.Second, func() bool {
			items, _ := e.q.List(outbox.Pending, 0)
			if len(items) == 1 && items[0].Attempts == i+1 && !items[0].InFlight {
				it = items[0]
				return true
			}
			return false
		})
		if got := it.NextAttempt.Sub(e.clock.Now()); got != want {
			t.Fatalf("attempt %d: next in %v, want %v", i+1, got, want)
		}
		if it.LastError == "" {
			t.Errorf("attempt %d: no last error", i+1)
		}
		testrig.WaitFor(t, "timer armed", 15*time.Second, func() bool { d, ok := e.clock.Next(); return ok && d.Equal(it.NextAttempt) })
		if len(e.s.Calls()) != i+1 {
			t.Fatalf("sent before the backoff passed")
		}
		e.clock.Advance(want)
	}
	if err := e.s.WaitCalls(ctx, 5); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
	if el := e.clock.Now().Sub(start); el != 11*time.Second {
		t.Errorf("elapsed %v", el)
	}
}

func TestRetryAfterPausesEverything(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.Concurrency = 1 })
	a := enq(t, e.q, outbox.KindKasa, "a", 0, false)
	enq(t, e.q, outbox.KindKasa, "b", 0, false)
	e.s.ScriptID(a.ID, outbox.Result{Verdict: outbox.Retry, RetryAfter: 30 * time.Second, Reason: "HTTP 429"})
	e.run(t)
	ctx := ctxT(t)
	if err := e.s.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	until := e.clock.Now().Add(30 * time.Second)
	testrig.WaitFor(t, "pause", 15*time.Second, func() bool { return stats(t, e.q).PausedUntil.Equal(until) })
	if err := e.clock.WaitFor(ctx, func(ds []time.Time) bool { return len(ds) == 1 && ds[0].Equal(until) }); err != nil {
		t.Fatal(err)
	}
	if n := len(e.s.Calls()); n != 1 {
		t.Fatalf("%d sends during the pause, want 1", n)
	}
	e.clock.Advance(30 * time.Second)
	if err := e.s.WaitCalls(ctx, 3); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { return stats(t, e.q).Pending == 0 })
}

func TestReauthRetriesOnceAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	a := enq(t, e.q, outbox.KindKasa, "a", 0, false)
	b := enq(t, e.q, outbox.KindKasa, "b", 0, false)
	e.s.ScriptID(a.ID, outbox.Result{Verdict: outbox.Reauth}, outbox.Result{Verdict: outbox.Delivered})
	e.s.ScriptID(b.ID, outbox.Result{Verdict: outbox.Reauth}, outbox.Result{Verdict: outbox.Reauth, Reason: "HTTP 401"})
	e.run(t)
	testrig.WaitFor(t, "results", 15*time.Second, func() bool {
		items, _ := e.q.List(outbox.Pending, 0)
		return stats(t, e.q).Delivered == 1 && len(items) == 1 && items[0].Attempts == 1
	})
	if n := len(e.s.CallsFor("a")); n != 2 {
		t.Errorf("a: %d sends, want 2", n)
	}
	if n := len(e.s.CallsFor("b")); n != 2 {
		t.Errorf("b: %d sends, want 2 (second reauth is a retry)", n)
	}
}

func TestRejectDeadLettersWithoutBlocking(t *testing.T) {
	e := newEnv(t, nil)
	bad := enq(t, e.q, outbox.KindKasa, "a", 0, false)
	enq(t, e.q, outbox.KindKasa, "a", 1, false)
	enq(t, e.q, outbox.KindKasa, "b", 0, false)
	e.s.ScriptID(bad.ID, outbox.Result{Verdict: outbox.Reject, Reason: `HTTP 404: {"status": false}`})
	stop := e.run(t)
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.Dead == 1 })
	st := stats(t, e.q)
	if st.Delivered != 2 || st.DeadLettered != 1 {
		t.Fatalf("stats %+v", st)
	}
	dead, err := e.q.List(outbox.Dead, 10)
	if err != nil || len(dead) != 1 || dead[0].ID != bad.ID || !strings.Contains(dead[0].DeadReason, "status") || dead[0].DeadAt.IsZero() {
		t.Fatalf("dead %+v %v", dead, err)
	}
	stop()
	if err := e.q.Retry(bad.ID + 100); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("retry unknown: %v", err)
	}
	if err := e.q.Retry(bad.ID); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, e.q); st.Pending != 1 || st.Dead != 0 {
		t.Fatalf("after retry %+v", st)
	}
	if err := e.q.Drop(bad.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Drop(bad.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Errorf("drop twice: %v", err)
	}
	if st := stats(t, e.q); st.Pending != 0 {
		t.Fatalf("after drop %+v", st)
	}
}

func TestDropInFlight(t *testing.T) {
	e := newEnv(t, nil)
	it := enq(t, e.q, outbox.KindKasa, "a", 0, false)
	gate := make(chan struct{})
	e.s.Hook = func(ctx context.Context, _ outbox.Item) *outbox.Result { <-gate; return nil }
	e.run(t)
	testrig.WaitFor(t, "in flight", 15*time.Second, func() bool { return stats(t, e.q).InFlight == 1 })
	if err := e.q.Drop(it.ID); !errors.Is(err, outbox.ErrInFlight) {
		t.Errorf("drop in flight: %v", err)
	}
	close(gate)
	testrig.WaitFor(t, "delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
}

func TestOfflineProbeAndReconnect(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) {
		o.RetryBase = time.Second
		o.RetryMax = time.Minute
		o.ReconnectJitter = 30 * time.Second
	})
	ctx := ctxT(t)
	for i := range 3 {
		enq(t, e.q, outbox.KindKasa, fmt.Sprint("k", i), 0, false)
	}
	down := errors.New("dial tcp: connection refused")
	e.s.SetProbe(nil)
	e.s.ScriptProbe(nil) // the probe at start succeeds
	var mu sync.Mutex
	offline := true
	e.s.Hook = func(ctx context.Context, _ outbox.Item) *outbox.Result {
		mu.Lock()
		defer mu.Unlock()
		if offline {
			return &outbox.Result{Verdict: outbox.Retry, Reason: "network unreachable"}
		}
		return nil
	}
	e.s.SetProbe(down)
	e.run(t)
	holdAtStart(t, e, 15*time.Second) // a start is a reconnect: jitter 30s × Rand 0.5
	if err := e.s.WaitCalls(ctx, 3); err != nil {
		t.Fatal(err)
	}
	probeAfterJitter(t, e, 15*time.Second)
	testrig.WaitFor(t, "offline", 15*time.Second, func() bool {
		st := stats(t, e.q)
		return st.Offline && !st.Online && st.InFlight == 0
	})
	atOffline := len(e.s.Calls())
	// Offline: nothing is sent, the probe backs off (one timer, one
	// probe: each probe's result arms the next timer).
	for i := range 4 {
		probes := e.s.Probes()
		if err := e.clock.BlockUntil(ctx, 1); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
		next, _ := e.clock.Next()
		e.clock.Set(next)
		if err := e.s.WaitProbes(ctx, probes+1); err != nil {
			t.Fatalf("probe %d: %v", i, err)
		}
	}
	sent := len(e.s.Calls())
	if sent > atOffline {
		t.Fatalf("%d sends while offline", sent-atOffline)
	}
	// Network back: a Kick (no person asked) probes after the reconnect
	// jitter (0.5*30s); that probe's success drains the queue at once,
	// without waiting for item backoffs or a second jitter.
	testrig.WaitFor(t, "probe timer idle", 15*time.Second, func() bool { return e.clock.Pending() == 1 })
	mu.Lock()
	offline = false
	mu.Unlock()
	e.s.SetProbe(nil)
	probes := e.s.Probes()
	e.q.Kick()
	probeAt := e.clock.Now().Add(15 * time.Second)
	if err := e.clock.WaitFor(ctx, func(ds []time.Time) bool { return len(ds) == 1 && ds[0].Equal(probeAt) }); err != nil {
		t.Fatalf("jittered probe timer after a kick: %v (timers %v)", err, deadlines(e))
	}
	if n := e.s.Probes(); n != probes {
		t.Fatalf("a kick probed at once (%d probes, want %d)", n, probes)
	}
	e.clock.Advance(15*time.Second - time.Millisecond)
	if n := e.s.Probes(); n != probes {
		t.Fatalf("probed before the jitter passed")
	}
	e.clock.Advance(time.Millisecond)
	if err := e.s.WaitProbes(ctx, probes+1); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.Delivered == 3 })
	if !stats(t, e.q).Online {
		t.Error("not online after a good probe")
	}
}

func TestErrFullKeepsAccepted(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.MaxSize = 256 << 10 })
	payload := json.RawMessage(`"` + strings.Repeat("x", 2000) + `"`)
	accepted := 0
	var err error
	for range 1000 {
		if _, err = e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("k", accepted), Payload: payload}); err != nil {
			break
		}
		accepted++
	}
	if !errors.Is(err, outbox.ErrFull) {
		t.Fatalf("after %d: %v, want ErrFull", accepted, err)
	}
	if accepted < 50 {
		t.Fatalf("only %d accepted", accepted)
	}
	if st := stats(t, e.q); st.Pending != accepted {
		t.Fatalf("pending %d, accepted %d", st.Pending, accepted)
	}
	e.run(t)
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { return stats(t, e.q).Delivered == uint64(accepted) })
	if _, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "again", Payload: payload}); err != nil {
		t.Fatalf("enqueue after drain: %v", err)
	}
}

func TestCorruptFileIsQuarantined(t *testing.T) {
	for name, content := range map[string][]byte{
		"garbage": bytes.Repeat([]byte("not a bbolt file "), 2000),
		"zeros":   make([]byte, 64<<10),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "outbox.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			q, err := outbox.Open(outbox.Options{Path: path, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer q.Close()
			st := stats(t, q)
			if st.Quarantined == "" || !strings.HasPrefix(filepath.Base(st.Quarantined), "outbox.db.corrupt-") {
				t.Fatalf("quarantined %q", st.Quarantined)
			}
			moved, err := os.ReadFile(st.Quarantined)
			if err != nil || !bytes.Equal(moved, content) {
				t.Fatalf("moved file: %v", err)
			}
			if !strings.Contains(logs.String(), "CORRUPT") || !strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("no loud log line: %s", logs.String())
			}
			enq(t, q, outbox.KindKasa, "k", 1, false)
		})
	}
}

func TestCorruptPageFailsCheck(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 200 {
		enq(t, e.q, outbox.KindKasa, fmt.Sprint("k", i), i, false)
	}
	e.q.Close()
	f, err := os.OpenFile(e.path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	// Smash every page after the two meta pages and the freelist.
	junk := bytes.Repeat([]byte{0xA5}, int(fi.Size())-4*4096)
	if _, err := f.WriteAt(junk, 4*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	q, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer q.Close()
	if st := stats(t, q); st.Quarantined == "" || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTruncatedFileIsQuarantined(t *testing.T) {
	for _, keep := range []int64{3, 4 * 4096} { // a third of the file; four pages
		e := newEnv(t, nil)
		for i := range 5000 {
			enq(t, e.q, outbox.KindKasa, fmt.Sprint("k", i), i, false)
		}
		e.q.Close()
		fi, err := os.Stat(e.path)
		if err != nil {
			t.Fatal(err)
		}
		size := keep
		if keep == 3 {
			size = fi.Size() / 3
		}
		if err := os.Truncate(e.path, size); err != nil {
			t.Fatal(err)
		}
		// Without care, bbolt faults (SIGBUS) reading past the end of the
		// mmap and the process dies; it must be quarantined instead.
		q, err := outbox.Open(e.opts)
		if err != nil {
			t.Fatalf("open truncated to %d bytes: %v", size, err)
		}
		if st := stats(t, q); st.Quarantined == "" {
			t.Errorf("truncated to %d bytes: not quarantined: %+v", size, st)
		}
		enq(t, q, outbox.KindKasa, "after", 1, false)
		q.Close()
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	e := newEnv(t, nil)
	opts := e.opts
	opts.OpenTimeout = 200 * time.Millisecond
	start := time.Now()
	_, err := outbox.Open(opts)
	if !errors.Is(err, outbox.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("second open took %v", el)
	}
	if !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), e.path) {
		t.Errorf("message %q", err)
	}
	if _, err := os.Stat(e.path + ".corrupt"); err == nil {
		t.Error("locked file was quarantined")
	}
}

func TestCompactsAfterDrain(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.CompactMinSize = 1 << 20 })
	payload := json.RawMessage(`"` + strings.Repeat("ş", 1000) + `"`)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 250 {
				if _, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint(w, "-", i%20), Payload: payload}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	before := stats(t, e.q).Bytes
	if before < 2<<20 {
		t.Fatalf("file only %d bytes", before)
	}
	e.run(t)
	testrig.WaitFor(t, "compaction", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.Compactions == 1 })
	st := stats(t, e.q)
	if st.Bytes*8 > before {
		t.Fatalf("file %d bytes after compaction, was %d", st.Bytes, before)
	}
	if st.Delivered != 2000 {
		t.Fatalf("delivered %d", st.Delivered)
	}
	// Still usable, and the counters survived the swap.
	enq(t, e.q, outbox.KindKasa, "after", 1, false)
	testrig.WaitFor(t, "delivered after compaction", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 2001 })
}

func TestRunStopsWithinGrace(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.StopGrace = 100 * time.Millisecond })
	enq(t, e.q, outbox.KindKasa, "a", 0, false)
	e.s.Hook = func(ctx context.Context, _ outbox.Item) *outbox.Result {
		<-ctx.Done() // a request that never answers
		return &outbox.Result{Verdict: outbox.Retry, Reason: ctx.Err().Error()}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.q.Run(ctx, e.s) }()
	testrig.WaitFor(t, "in flight", 15*time.Second, func() bool { return stats(t, e.q).InFlight == 1 })
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop within 5s")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("stop took %v", el)
	}
}

func TestSecondRunRefused(t *testing.T) {
	e := newEnv(t, nil)
	e.run(t)
	testrig.WaitFor(t, "probe", 15*time.Second, func() bool { return e.s.Probes() >= 1 })
	if err := e.q.Run(context.Background(), e.s); !errors.Is(err, outbox.ErrRunning) {
		t.Fatalf("second run: %v", err)
	}
}

func TestLogsCarryNoPayload(t *testing.T) {
	logs := &testrig.Buffer{}
	e := newEnv(t, func(o *outbox.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	secret := "SIFRE-hunter2-do-not-log"
	it, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "k", Payload: json.RawMessage(`{"password":"` + secret + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	e.s.ScriptID(it.ID, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 500"}, outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 400"})
	e.s.ScriptProbe(nil)
	e.s.SetProbe(errors.New("dial tcp 127.0.0.1:1: connection refused"))
	e.run(t)
	testrig.WaitFor(t, "offline", 15*time.Second, func() bool { return stats(t, e.q).Offline })
	e.s.SetProbe(nil)
	e.q.Kick()
	testrig.WaitFor(t, "dead", 15*time.Second, func() bool { return stats(t, e.q).Dead == 1 })
	st := stats(t, e.q)
	for _, s := range []string{logs.String(), fmt.Sprintf("%+v", st)} {
		if strings.Contains(s, secret) || strings.Contains(s, it.IdempotencyKey) {
			t.Fatalf("payload or idempotency key leaked: %s", s)
		}
	}
	if !strings.Contains(logs.String(), "dead-lettered") || !strings.Contains(logs.String(), "back online") {
		t.Fatalf("expected log lines missing: %s", logs.String())
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]outbox.State{"pending": outbox.Pending, "dead": outbox.Dead, "": outbox.Pending, "DEAD": outbox.Dead} {
		if got, err := outbox.ParseState(in); err != nil || got != want {
			t.Errorf("ParseState(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := outbox.ParseState("gone"); err == nil {
		t.Error("ParseState(gone) succeeded")
	}
}

func TestRetryDeadInFrontOfHead(t *testing.T) {
	e := newEnv(t, nil)
	a1 := enq(t, e.q, outbox.KindKasa, "a", 1, false)
	a2 := enq(t, e.q, outbox.KindKasa, "a", 2, false)
	e.s.ScriptID(a1.ID, outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 400"})
	e.s.ScriptID(a2.ID, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 500"})
	stop := e.run(t)
	testrig.WaitFor(t, "a2 backed off", 15*time.Second, func() bool {
		items, _ := e.q.List(outbox.Pending, 0)
		return stats(t, e.q).Dead == 1 && len(items) == 1 && items[0].Attempts == 1 && !items[0].InFlight
	})
	stop()
	if err := e.q.CheckIndex(); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Retry(a1.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.q.CheckIndex(); err != nil {
		t.Fatalf("after retry in front of the head: %v", err)
	}
	e.run(t)
	testrig.WaitFor(t, "a1 again", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
	e.clock.Advance(time.Hour)
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.InFlight == 0 })
	var got []int
	for _, c := range e.s.CallsFor("a") {
		got = append(got, seqOf(t, c.Item))
	}
	if fmt.Sprint(got) != "[1 2 1 2]" {
		t.Fatalf("sends %v, want [1 2 1 2]", got)
	}
}

// holdAtStart checks that Run holds back its first send by the reconnect
// jitter (a fleet booting together after a power cut must not stampede),
// then lets the injected clock pass it.
func holdAtStart(t *testing.T, e *env, hold time.Duration) {
	t.Helper()
	ctx := ctxT(t)
	if err := e.clock.BlockUntil(ctx, 1); err != nil {
		t.Fatalf("no timer for the start hold: %v", err)
	}
	if n := len(e.s.Calls()); n != 0 {
		t.Fatalf("%d sends before the reconnect jitter passed", n)
	}
	e.clock.Advance(hold - time.Millisecond)
	if n := len(e.s.Calls()); n != 0 {
		t.Fatalf("%d sends before the reconnect jitter passed", n)
	}
	e.clock.Advance(time.Millisecond)
}

// probeAfterJitter: the probe after a failed send while online is one
// nobody asked for, so it waits the jitter: its timer is
// armed for jitter from now, then the clock gets there.
func probeAfterJitter(t *testing.T, e *env, jitter time.Duration) {
	t.Helper()
	at := e.clock.Now().Add(jitter)
	ctx := ctxT(t)
	// The loop arms one timer, the earliest: a record's backoff that is
	// due before the probe (when its failure is applied after the probe
	// was scheduled, as under wine) hides the probe's until it has fired.
	for {
		var early time.Time
		if err := e.clock.WaitFor(ctx, func(ds []time.Time) bool {
			early = time.Time{}
			for _, d := range ds {
				if d.Equal(at) {
					return true
				}
			}
			for _, d := range ds {
				if d.Before(at) && (early.IsZero() || d.Before(early)) {
					early = d
				}
			}
			return !early.IsZero()
		}); err != nil {
			t.Fatalf("no jittered probe timer after the failed sends: %v (timers %v)", err, deadlines(e))
		}
		if early.IsZero() {
			break
		}
		e.clock.Set(early)
	}
	e.clock.Set(at)
}

func TestReconnectResetsBackoff(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) {
		o.RetryBase = time.Minute // an item backoff of 30s with Rand=0.5
		o.RetryMax = time.Hour
		o.ReconnectJitter = 20 * time.Second // 10s with Rand=0.5
	})
	ctx := ctxT(t)
	for i := range 3 {
		enq(t, e.q, outbox.KindKasa, fmt.Sprint("k", i), 0, false)
	}
	var mu sync.Mutex
	down := true
	e.s.Hook = func(ctx context.Context, _ outbox.Item) *outbox.Result {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return &outbox.Result{Verdict: outbox.Retry, Reason: "network unreachable"}
		}
		return nil
	}
	e.s.ScriptProbe(nil)
	e.s.SetProbe(errors.New("no route to host"))
	e.run(t)
	holdAtStart(t, e, 10*time.Second)
	if err := e.s.WaitCalls(ctx, 3); err != nil {
		t.Fatal(err)
	}
	probeAfterJitter(t, e, 10*time.Second)
	testrig.WaitFor(t, "offline", 15*time.Second, func() bool {
		st := stats(t, e.q)
		return st.Offline && st.InFlight == 0
	})
	mu.Lock()
	down = false
	mu.Unlock()
	e.s.SetProbe(nil)
	testrig.WaitFor(t, "probe timer idle", 15*time.Second, func() bool { return e.clock.Pending() == 1 })
	e.q.Kick()
	probeAt := e.clock.Now().Add(10 * time.Second) // the kick's probe waits the jitter
	if err := e.clock.WaitFor(ctx, func(ds []time.Time) bool { return len(ds) == 1 && ds[0].Equal(probeAt) }); err != nil {
		t.Fatalf("jittered probe timer: %v (timers %v)", err, deadlines(e))
	}
	e.clock.Advance(10 * time.Second) // well before the 30s item backoff
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.Delivered == 3 })
}

func TestLoweredMaxSizeStillOpens(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.MaxSize = 1 << 20 })
	payload := json.RawMessage(`"` + strings.Repeat("ğ", 2000) + `"`)
	n := 0
	for ; n < 1000; n++ {
		if _, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("k", n), Payload: payload}); err != nil {
			if !errors.Is(err, outbox.ErrFull) {
				t.Fatal(err)
			}
			break
		}
	}
	e.q.Close()
	opts := e.opts
	opts.MaxSize = 64 << 10 // below the file's size now
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatalf("open with a lower max size: %v", err)
	}
	defer q.Close()
	st := stats(t, q)
	if st.Quarantined != "" || st.Pending != n {
		t.Fatalf("stats %+v, want %d pending and no quarantine", st, n)
	}
	if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "x", Payload: payload}); !errors.Is(err, outbox.ErrFull) {
		t.Fatalf("enqueue: %v, want ErrFull", err)
	}
}

func TestOldestPendingAge(t *testing.T) {
	e := newEnv(t, nil)
	enq(t, e.q, outbox.KindKasa, "a", 0, false)
	e.clock.Advance(90 * time.Second)
	enq(t, e.q, outbox.KindKasa, "b", 0, false)
	if st := stats(t, e.q); st.OldestPendingAge != 90*time.Second || st.Pending != 2 || st.Bytes == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInspect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	q, err := outbox.Open(outbox.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprint("special_code:", i), Payload: json.RawMessage(`{"code":"X"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := outbox.Inspect(path, 10); !errors.Is(err, outbox.ErrInUse) {
		t.Errorf("Inspect of an open queue: %v, want ErrInUse", err)
	}
	q.Close()
	before, _ := os.ReadFile(path)
	st, dead, err := outbox.Inspect(path, 10)
	if err != nil || st.Pending != 3 || st.Enqueued != 3 || len(dead) != 0 || st.Bytes == 0 {
		t.Errorf("Inspect: %+v %v %v", st, dead, err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("Inspect changed the file")
	}
	if _, _, err := outbox.Inspect(filepath.Join(t.TempDir(), "none.db"), 10); err == nil {
		t.Error("Inspect of a missing file succeeded")
	}
}
