package outbox_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
	"github.com/tposagent/tposagent/outbox/outboxtest"
)

// gatedProber holds its second probe until gate closes.
type gatedProber struct {
	*outboxtest.Sender
	entered chan struct{}
	gate    chan struct{}
	n       atomic.Int32
}

func (g *gatedProber) Probe(ctx context.Context) error {
	if g.n.Add(1) == 2 {
		g.entered <- struct{}{}
		select {
		case <-g.gate:
		case <-ctx.Done():
		}
	}
	return g.Sender.Probe(ctx)
}

// noProbeFor: no probe beyond n starts while the fake clock stands still
// (real time, a short deadline: the old code probed at once).
func noProbeFor(t *testing.T, e *env, n int, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.s.WaitProbes(ctx, n+1); err == nil {
		t.Fatalf("%s: a probe ran before the reconnect jitter (%d probes)", what, e.s.Probes())
	}
}

// advanceToTimer waits for a timer at at and sets the clock there.
func advanceToTimer(t *testing.T, e *env, at time.Time, what string) {
	t.Helper()
	if err := e.clock.WaitFor(ctxT(t), func(ds []time.Time) bool {
		for _, d := range ds {
			if d.Equal(at) {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("%s: no timer at %v: %v (timers %v)", what, at, err, deadlines(e))
	}
	e.clock.Set(at)
}

// TestUnaskedProbesWaitJitter: every probe nobody asked for
// waits a random part of ReconnectJitter, online too: the probe at Run's
// start, the re-probe after a success that a newer failure made stale,
// and the probe after a failed send. The old code started all three at
// once, so a fleet whose server failed one send on every till probed in
// the same second.
func TestUnaskedProbesWaitJitter(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) {
		o.RetryBase = time.Hour // no item retry within the test
		o.RetryMax = 2 * time.Hour
		o.ReconnectJitter = 20 * time.Second // 10 s with Rand 0.5
	})
	a := enq(t, e.q, outbox.KindKasa, "kasa:a", 1, true)
	e.s.ScriptID(a.ID, outbox.Result{Verdict: outbox.Retry, Reason: "dial tcp: connection reset"})
	g := &gatedProber{Sender: e.s, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	ctx := ctxT(t)
	testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return e.q.Run(ctx, g) })
	t.Cleanup(func() {
		select {
		case <-g.gate:
		default:
			close(g.gate)
		}
	})

	// 1. The start's probe waits the start's hold; sending waits for it.
	if err := e.clock.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	start := e.clock.Now()
	noProbeFor(t, e, 0, "start")
	advanceToTimer(t, e, start.Add(10*time.Second), "start")
	if err := e.s.WaitProbes(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// 2. The record's send fails: the probe after the jitter.
	waitSend(t, e, 1, "first attempt")
	testrig.WaitFor(t, "failure noted", 15*time.Second, func() bool { return stats(t, e.q).InFlight == 0 })
	at := e.clock.Now()
	noProbeFor(t, e, 1, "failed send")
	advanceToTimer(t, e, at.Add(10*time.Second), "failed send")
	select {
	case <-g.entered:
	case <-ctx.Done():
		t.Fatal("no probe after the failed send's jitter")
	}
	// 3. Another send fails while that probe runs: the re-probe after
	// its success waits the jitter too.
	// Scripted by key before the enqueue: the running queue may send the
	// record before Enqueue has returned its id (it was then delivered,
	// no failure came, and no re-probe: 4 runs of 360 under load).
	e.s.ScriptKey("kasa:b", outbox.Result{Verdict: outbox.Retry, Reason: "dial tcp: connection reset"})
	enq(t, e.q, outbox.KindKasa, "kasa:b", 1, true)
	waitSend(t, e, 2, "second record")
	testrig.WaitFor(t, "failure noted", 15*time.Second, func() bool { return stats(t, e.q).InFlight == 0 })
	close(g.gate)
	if err := e.s.WaitProbes(ctx, 2); err != nil {
		t.Fatal(err)
	}
	at = e.clock.Now()
	noProbeFor(t, e, 2, "re-probe")
	advanceToTimer(t, e, at.Add(10*time.Second), "re-probe")
	if err := e.s.WaitProbes(ctx, 3); err != nil {
		t.Fatalf("re-probe after the jitter: %v", err)
	}
	if st := stats(t, e.q); !st.Online {
		t.Fatalf("offline after successful probes: %+v", st)
	}
}
