package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
	"github.com/tposagent/tposagent/outbox/outboxtest"
)

// TestPauseSurvivesRestart: a server's Retry-After pause is
// kept in the file; a restarted agent waits it out before it sends any
// record, and its status shows the pause. The old code kept the pause in
// memory only: after the restart the other record went at once.
func TestPauseSurvivesRestart(t *testing.T) {
	e := newEnv(t, nil)
	until := pauseThenStop(t, e, 10*time.Minute)
	q, s := reopenAfterPause(t, e, 0, nil)
	testrig.WaitFor(t, "pause restored", 15*time.Second, func() bool { return stats(t, q).PausedUntil.Equal(until) })
	e.clock.Advance(until.Sub(e.clock.Now()) - time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.WaitCalls(ctx, 1); err == nil {
		t.Fatalf("a record was sent at %v during the server's pause until %v", e.clock.Now(), until)
	}
	e.clock.Advance(time.Millisecond)
	if err := s.WaitCalls(ctxT(t), 2); err != nil {
		t.Fatalf("after the pause: %v (sends %d)", err, len(s.Calls()))
	}
}

// TestStoredPauseIsCapped: a stored pause end further away than
// retry_after_max after the restart (the wall clock went back a day while
// the agent was down) is cut to retry_after_max from now.
func TestStoredPauseIsCapped(t *testing.T) {
	e := newEnv(t, nil)
	pauseThenStop(t, e, 30*time.Minute)
	q, _ := reopenAfterPause(t, e, -24*time.Hour, nil)
	want := e.clock.Now().Add(time.Hour) // the default retry_after_max
	testrig.WaitFor(t, "pause restored", 15*time.Second, func() bool { return stats(t, q).PausedUntil.Equal(want) })
}

// pauseThenStop: the first send of a record answers Retry-After ra; when
// the queue is paused its Run stops. It returns the pause end.
func pauseThenStop(t *testing.T, e *env, ra time.Duration) time.Time {
	t.Helper()
	it := enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	e.s.ScriptID(it.ID, outbox.Result{Verdict: outbox.Retry, RetryAfter: ra, Reason: "HTTP 503"})
	stop := e.run(t)
	waitSend(t, e, 1, "first attempt")
	testrig.WaitFor(t, "paused", 15*time.Second, func() bool { return !stats(t, e.q).PausedUntil.IsZero() })
	testrig.WaitFor(t, "retry stored", 15*time.Second, func() bool { return stats(t, e.q).InFlight == 0 })
	stop()
	return stats(t, e.q).PausedUntil
}

// reopenAfterPause stops e's queue (paused by pausedBy), closes it, moves
// the clock by skew, opens the file again, enqueues a second record and
// runs the new queue with a new sender.
func reopenAfterPause(t *testing.T, e *env, skew time.Duration, mod func(*outbox.Options)) (*outbox.Queue, *outboxtest.Sender) {
	t.Helper()
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	if skew != 0 {
		e.clock.Set(e.clock.Now().Add(skew))
	}
	opts := e.opts
	if mod != nil {
		mod(&opts)
	}
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = q.Close() })
	enq(t, q, outbox.KindKasa, "kasa:2", 1, true)
	s := outboxtest.NewSender()
	testrig.Run(t, "run after restart", 10*time.Second, func(ctx context.Context) error { return q.Run(ctx, s) })
	return q, s
}
