package outbox_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// pausedBy makes the first send of a new item answer Retry-After ra and
// waits until the queue is paused; it returns the item.
func pausedBy(t *testing.T, e *env, ra time.Duration) outbox.Item {
	t.Helper()
	it := enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	e.s.ScriptID(it.ID, outbox.Result{Verdict: outbox.Retry, RetryAfter: ra, Reason: "HTTP 503"})
	e.run(t)
	waitSend(t, e, 1, "first attempt")
	testrig.WaitFor(t, "paused", 15*time.Second, func() bool { return !stats(t, e.q).PausedUntil.IsZero() })
	testrig.WaitFor(t, "retry stored", 15*time.Second, func() bool { return stats(t, e.q).InFlight == 0 })
	return it
}

// A server asking for two days is paused for at most RetryAfterMax
// (default 1 h), the item's next attempt too.
func TestRetryAfterIsCapped(t *testing.T) {
	e := newEnv(t, nil)
	it := pausedBy(t, e, 48*time.Hour)
	limit := e.clock.Now().Add(time.Hour)
	if st := stats(t, e.q); st.PausedUntil.After(limit) {
		t.Fatalf("paused until %v, more than 1 h away (limit %v)", st.PausedUntil, limit)
	}
	got, _, err := e.q.Get(it.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.NextAttempt.After(limit) {
		t.Fatalf("next attempt %v, more than 1 h away", got.NextAttempt)
	}
	e.clock.Advance(time.Hour)
	waitSend(t, e, 2, "after the capped pause")
}

// The cap is configurable.
func TestRetryAfterMaxOption(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.RetryAfterMax = 2 * time.Minute })
	pausedBy(t, e, 30*time.Minute)
	if until, limit := stats(t, e.q).PausedUntil, e.clock.Now().Add(2*time.Minute); !until.Equal(limit) {
		t.Fatalf("paused until %v, want %v", until, limit)
	}
}

// "outbox retry" on a pending item means send now: it answers nil (not
// ErrNotFound), ends the server's pause and the item goes at once.
func TestRetryOfPendingItemSendsNow(t *testing.T) {
	e := newEnv(t, nil)
	it := pausedBy(t, e, 30*time.Minute)
	if err := e.q.Retry(it.ID); err != nil {
		t.Fatalf("retry of a pending item: %v", err)
	}
	if st := stats(t, e.q); !st.PausedUntil.IsZero() {
		t.Fatalf("still paused until %v after an operator's retry", st.PausedUntil)
	}
	waitSend(t, e, 2, "send now")
	testrig.WaitFor(t, "delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
	if err := e.q.Retry(it.ID); !errors.Is(err, outbox.ErrNotFound) {
		t.Fatalf("retry of a delivered item: %v, want ErrNotFound", err)
	}
}

// A probe that succeeds after the pause began ends it (a Kick asks for
// one); the queue sends without waiting out the pause.
func TestProbeSuccessEndsPause(t *testing.T) {
	e := newEnv(t, nil)
	pausedBy(t, e, 30*time.Minute)
	probes := e.s.Probes()
	e.q.Kick()
	if err := e.s.WaitProbes(ctxT(t), probes+1); err != nil {
		t.Fatalf("no probe during the pause after a kick: %v", err)
	}
	waitSend(t, e, 2, "after a successful probe")
	testrig.WaitFor(t, "pause ended", 15*time.Second, func() bool { return stats(t, e.q).PausedUntil.IsZero() })
}

// A probe that fails leaves the pause alone.
func TestFailedProbeKeepsPause(t *testing.T) {
	e := newEnv(t, nil)
	pausedBy(t, e, 30*time.Minute)
	e.s.SetProbe(errors.New("HTTP 503"))
	probes := e.s.Probes()
	e.q.Kick()
	if err := e.s.WaitProbes(ctxT(t), probes+1); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "probe result applied", 15*time.Second, func() bool { return stats(t, e.q).Offline })
	if st := stats(t, e.q); st.PausedUntil.IsZero() {
		t.Fatal("a failed probe ended the pause")
	}
	if n := len(e.s.Calls()); n != 1 {
		t.Fatalf("%d sends, want 1", n)
	}
}
