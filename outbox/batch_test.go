package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// newHeldEnv opens a queue for tests that hold bbolt's writer lock while
// requests gather into one commit, and count them:
//   - its enqueues wait for their commit as long as such a test needs (the
//     default Options.EnqueueTimeout, 10 s of real time, withdraws the first
//     of them on a loaded machine before the last has arrived);
//   - its janitor is stopped before the test arranges the batch: a prune
//     request it sends (a drain kicks it) would join or take the commit the
//     test counts (seen under wine, where the kick came late).
func newHeldEnv(t *testing.T) *env {
	return newEnv(t, func(o *outbox.Options) { o.EnqueueTimeout = 5 * time.Minute })
}

// oneBatch runs bad and n enqueues so that they share one commit: the
// writer lock is held while they arrive, then released. e comes from
// newHeldEnv.
func oneBatch(t *testing.T, e *env, n int, bad func() error) (enqErrs []error, badErr error) {
	t.Helper()
	if e.opts.EnqueueTimeout < time.Minute {
		t.Fatalf("oneBatch needs a queue from newHeldEnv (EnqueueTimeout %v would withdraw waiting enqueues)", e.opts.EnqueueTimeout)
	}
	e.q.StopJanitorForTest()
	release := sync.OnceFunc(e.q.HoldWritesForTest())
	t.Cleanup(release) // a failed wait below must not leave the file locked
	first := make(chan error, 1)
	go func() { // takes the loop's commit slot and waits for the lock
		_, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "first", Payload: []byte(`{}`)})
		first <- err
	}()
	testrig.WaitFor(t, "first commit waiting for the lock", 15*time.Second, e.q.CommittingForTest)
	var wg sync.WaitGroup
	enqErrs = make([]error, n)
	wg.Add(n + 1)
	go func() { defer wg.Done(); badErr = bad() }()
	for i := range n {
		go func() {
			defer wg.Done()
			_, enqErrs[i] = e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode,
				Key: fmt.Sprintf("sc:%d", i), Payload: []byte(`{"code":"x"}`)})
		}()
	}
	testrig.WaitFor(t, "all requests waiting for one commit", 15*time.Second, func() bool { return e.q.QueuedForTest() == n+1 })
	release()
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatalf("first enqueue: %v", err)
	}
	return enqErrs, badErr
}

// Issue: one Drop of an unreadable record failed 63 of 64 concurrent
// enqueues. The Drop now succeeds (the key is found without decoding)
// and the enqueues commit.
func TestDropOfUnreadableRecordFailsNothingElse(t *testing.T) {
	e := newHeldEnv(t)
	victim := enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	if err := e.q.SetRecordForTest(victim.ID, outbox.Pending, []byte("\x01\xff garbage")); err != nil {
		t.Fatal(err)
	}
	errs, dropErr := oneBatch(t, e, 63, func() error { return e.q.Drop(victim.ID) })
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed != 0 {
		t.Fatalf("%d of %d enqueues failed beside a drop of an unreadable record (first: %v)", failed, len(errs), errors.Join(errs...))
	}
	if dropErr != nil {
		t.Fatalf("drop of an unreadable pending record: %v", dropErr)
	}
	if st := stats(t, e.q); st.Pending != 64 {
		t.Fatalf("pending %d, want 64", st.Pending)
	}
}

// A request that fails inside the transaction is answered alone with its
// error; the others in its commit are applied (here: a Retry of a dead
// letter whose bytes are damaged, which cannot be decoded).
func TestFailingRequestIsIsolatedInItsCommit(t *testing.T) {
	e := newHeldEnv(t)
	e.s.SetDefault(outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 422 bad code"})
	victim := enq(t, e.q, outbox.KindSpecialCode, "sc:victim", 1, false)
	stop := e.run(t)
	testrig.WaitFor(t, "dead letter", 15*time.Second, func() bool { return stats(t, e.q).Dead == 1 })
	stop()
	if err := e.q.SetRecordForTest(victim.ID, outbox.Dead, []byte("\x01\x05{bad")); err != nil {
		t.Fatal(err)
	}
	errs, retryErr := oneBatch(t, e, 40, func() error { return e.q.Retry(victim.ID) })
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("enqueues failed beside a failing retry: %v", err)
	}
	if retryErr == nil || errors.Is(retryErr, outbox.ErrNotFound) {
		t.Fatalf("retry of a damaged dead letter: %v, want its own decode error", retryErr)
	}
	t.Logf("retry answered alone: %v", retryErr)
	st := stats(t, e.q)
	if st.Pending != 41 || st.Dead != 1 {
		t.Fatalf("pending %d dead %d, want 41 and 1", st.Pending, st.Dead)
	}
}
