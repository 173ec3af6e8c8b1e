package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
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

// debugEnv is newEnv with the queue's log (debug level) kept in logs.
func debugEnv(t *testing.T, logs *testrig.Buffer) *env {
	return newEnv(t, func(o *outbox.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
}

// noProbeDuringPause waits until the queue either logged that it held a
// probe back for the pause (the fixed code) or probed (the old code: a
// probe that succeeds ends the pause), then fails on a probe.
func noProbeDuringPause(t *testing.T, e *env, logs *testrig.Buffer, probes int, what string) {
	t.Helper()
	testrig.WaitFor(t, what+" handled", 15*time.Second, func() bool {
		return strings.Contains(logs.String(), "no probe during the server's pause") || e.s.Probes() > probes
	})
	if n := e.s.Probes(); n != probes {
		t.Fatalf("%s during the server's pause started a probe (%d probes, want %d)", what, n, probes)
	}
}

// TestKickDuringPauseWaitsItOut: Retry-After is the server's word. A kick
// during the pause (a registration was answered: the network is there)
// starts no probe, and the pause holds until it has passed. The old code
// probed on the kick and ended the pause when the probe (a login)
// succeeded: the record went again 0.66 s into a 3 s Retry-After.
func TestKickDuringPauseWaitsItOut(t *testing.T) {
	logs := &testrig.Buffer{}
	e := debugEnv(t, logs)
	pausedBy(t, e, 3*time.Second)
	until := stats(t, e.q).PausedUntil
	probes := e.s.Probes()
	e.clock.Advance(660 * time.Millisecond)
	e.q.Kick()
	noProbeDuringPause(t, e, logs, probes, "a kick")
	if st := stats(t, e.q); !st.PausedUntil.Equal(until) {
		t.Fatalf("paused until %v after a kick, want %v", st.PausedUntil, until)
	}
	if n := len(e.s.Calls()); n != 1 {
		t.Fatalf("%d sends during the pause, want 1", n)
	}
	// The pause passes: the record goes again.
	e.clock.Set(until)
	waitSend(t, e, 2, "after the pause")
}

// TestFailedSendDuringPauseStartsNoProbe: a send that was in flight when
// another record's answer paused the queue fails as the network does;
// that starts no probe either (the old code probed, and the probe's
// success ended the pause).
func TestFailedSendDuringPauseStartsNoProbe(t *testing.T) {
	logs := &testrig.Buffer{}
	e := debugEnv(t, logs)
	a := enq(t, e.q, outbox.KindKasa, "kasa:a", 1, true)
	b := enq(t, e.q, outbox.KindKasa, "kasa:b", 1, true)
	e.s.ScriptID(a.ID, outbox.Result{Verdict: outbox.Retry, RetryAfter: time.Minute, Reason: "HTTP 503"})
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	e.s.Hook = func(ctx context.Context, it outbox.Item) *outbox.Result {
		if it.ID != b.ID {
			return nil
		}
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
		}
		return &outbox.Result{Verdict: outbox.Retry, Reason: "dial tcp: connection reset"}
	}
	e.run(t)
	select {
	case <-entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the second record was not sent")
	}
	testrig.WaitFor(t, "paused", 15*time.Second, func() bool { return !stats(t, e.q).PausedUntil.IsZero() })
	until := stats(t, e.q).PausedUntil
	probes := e.s.Probes()
	close(gate)
	noProbeDuringPause(t, e, logs, probes, "a failed send")
	testrig.WaitFor(t, "results stored", 15*time.Second, func() bool { return stats(t, e.q).InFlight == 0 })
	if st := stats(t, e.q); !st.PausedUntil.Equal(until) {
		t.Fatalf("paused until %v, want %v", st.PausedUntil, until)
	}
	if n := len(e.s.Calls()); n != 2 {
		t.Fatalf("%d sends, want 2", n)
	}
}

// TestProbeRetryAfterPauses: a probe the server answers with Retry-After
// (a login or list answered 503 while offline) pauses the queue like a
// send's: no probe before it has passed, a kick included. The old code
// dropped the probe's Retry-After and probed again on its backoff (a
// second or so later), so a fleet kept knocking on a server that had asked
// for an hour.
func TestProbeRetryAfterPauses(t *testing.T) {
	logs := &testrig.Buffer{}
	e := debugEnv(t, logs)
	enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	e.s.SetDefault(outbox.Result{Verdict: outbox.Retry, Reason: "dial tcp: connection refused"})
	e.s.ScriptProbe(&outbox.RetryAfterError{Err: errors.New("probe: HTTP 503"), After: time.Hour})
	e.run(t)
	// Sending waits for the start's probe, which pauses the
	// queue: no record goes.
	testrig.WaitFor(t, "paused by the probe", 15*time.Second, func() bool { return !stats(t, e.q).PausedUntil.IsZero() })
	if n := len(e.s.Calls()); n != 0 {
		t.Fatalf("%d sends after a start probe answered with Retry-After", n)
	}
	until := stats(t, e.q).PausedUntil
	if want := e.clock.Now().Add(time.Hour); until.Before(want.Add(-time.Second)) || until.After(want) {
		t.Fatalf("paused until %v, want about %v", until, want)
	}
	e.clock.Advance(10 * time.Minute)
	e.q.Kick()
	noProbeDuringPause(t, e, logs, 1, "10 minutes and a kick")
	e.clock.Set(until.Add(11 * time.Minute)) // past the pause and its jitter (at most 10 min)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.s.WaitProbes(ctx, 2); err != nil {
		t.Fatalf("no probe after the pause: %v", err)
	}
}
