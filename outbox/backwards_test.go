package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

const year = 365 * 24 * time.Hour

// waitSend waits a short real-time while for the n-th send: a stalled
// queue fails fast instead of at the test's deadline.
func waitSend(t *testing.T, e *env, n int, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := e.s.WaitCalls(ctx, n); err != nil {
		t.Fatalf("%s: send %d did not happen (sends %d, timers at %v)", what, n, len(e.s.Calls()), deadlines(e))
	}
}

func deadlines(e *env) []time.Time {
	var ds []time.Time
	_ = e.clock.WaitFor(context.Background(), func(d []time.Time) bool { ds = d; return true })
	return ds
}

// The till's clock jumps back a year (dead CMOS battery, NTP correction)
// while an item waits out a 500 ms backoff: it is sent after the backoff,
// not a year later.
func TestClockBackwardsDoesNotStallABackoff(t *testing.T) {
	e := newEnv(t, nil)
	it := enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	e.s.ScriptID(it.ID, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 502"})
	e.run(t)
	waitSend(t, e, 1, "first attempt")
	due := e.clock.Now().Add(500 * time.Millisecond) // full jitter 0.5 × 1s
	ctx := ctxT(t)
	if err := e.clock.WaitFor(ctx, func(ds []time.Time) bool { return len(ds) == 1 && ds[0].Equal(due) }); err != nil {
		t.Fatalf("backoff timer: %v", err)
	}
	e.clock.Jump(-year)
	e.clock.Advance(500 * time.Millisecond) // the backoff's real duration passes
	// Any later timer the queue arms must be within RetryMax.
	waitSend(t, e, 2, "after the clock went back a year")
	testrig.WaitFor(t, "delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
}

// A due time written before the clock went back is due now even when the
// queue is started afterwards (the agent restarted with the wrong time).
func TestClockBackwardsAcrossRestart(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.RetryBase = time.Minute; o.RetryMax = time.Minute })
	it := enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	e.s.ScriptID(it.ID, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 502"})
	stop := e.run(t)
	waitSend(t, e, 1, "first attempt")
	testrig.WaitFor(t, "backoff stored", 15*time.Second, func() bool {
		items, _ := e.q.List(outbox.Pending, 0)
		return len(items) == 1 && !items[0].NextAttempt.IsZero()
	})
	stop()
	e.clock.Jump(-year)
	e.run(t)
	waitSend(t, e, 2, "after a restart with the clock a year back")
}

// A server's Retry-After pause set before the clock went back ends; it does
// not last a year.
func TestClockBackwardsEndsAPause(t *testing.T) {
	e := newEnv(t, nil)
	a := enq(t, e.q, outbox.KindKasa, "a", 0, false)
	e.s.ScriptID(a.ID, outbox.Result{Verdict: outbox.Retry, RetryAfter: 10 * time.Minute, Reason: "HTTP 429"})
	e.run(t)
	waitSend(t, e, 1, "first attempt")
	testrig.WaitFor(t, "paused", 15*time.Second, func() bool { return !stats(t, e.q).PausedUntil.IsZero() })
	e.clock.Jump(-year)
	e.clock.Advance(10 * time.Minute) // the pause's real length passes
	waitSend(t, e, 2, "after the pause with the clock a year back")
}
