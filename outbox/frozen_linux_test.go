package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/internal/testrig/loopfs"
	"github.com/tposagent/tposagent/outbox"
)

// TestFrozenDisk: with the data disk frozen (fsfreeze), an Enqueue is
// answered within Options.EnqueueTimeout (ErrCommitTimeout: not
// acknowledged; "may still be stored" only for the one whose commit had
// begun), a stop (Run's context, then Close) ends within 5 s although the
// commit hangs, and after the thaw nothing acknowledged is missing. (The
// code this replaced waited for the disk: POSTs and the stop hung as long
// as the freeze.)
func TestFrozenDisk(t *testing.T) {
	dir, freeze, thaw := loopfs.Mount(t)
	const bound = 1500 * time.Millisecond
	opts := outbox.Options{Path: filepath.Join(dir, "outbox.db"), EnqueueTimeout: bound, CloseTimeout: time.Second, StopGrace: time.Second}
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			q.Close()
		}
	})
	var acked []uint64
	for i := range 3 {
		acked = append(acked, code(t, q, i).ID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := newGatedSender() // delivers at once (no gate id)
	runDone := make(chan error, 1)
	go func() { runDone <- q.Run(ctx, s) }()
	testrig.WaitFor(t, "the three records delivered", 10*time.Second, func() bool {
		st, err := q.Stats()
		return err == nil && st.Pending == 0
	})

	freeze()
	type answer struct {
		took time.Duration
		err  error
	}
	enqueue := func(key string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			p, _ := json.Marshal(map[string]string{"integration_id": key})
			start := time.Now()
			_, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: key, Payload: p})
			ch <- answer{time.Since(start), err}
		}()
		return ch
	}
	first := enqueue("frozen-1")
	testrig.WaitFor(t, "the first commit on the frozen disk to start", 5*time.Second, q.CommittingForTest)
	second := enqueue("frozen-2")
	for i, ch := range []<-chan answer{first, second} {
		a := <-ch
		if a.took > bound+time.Second || !errors.Is(a.err, outbox.ErrCommitTimeout) {
			t.Fatalf("enqueue %d on a frozen disk: %v after %v, want ErrCommitTimeout within %v", i+1, a.err, a.took, bound)
		}
		if maybe := errors.Is(a.err, outbox.ErrMaybeStored); maybe != (i == 0) {
			t.Errorf("enqueue %d: %v: 'may still be stored' is %v, want %v", i+1, a.err, maybe, i == 0)
		}
		t.Logf("enqueue %d on a frozen disk answered in %v: %v", i+1, a.took.Round(time.Millisecond), a.err)
	}

	// Stop as the agent does: Run's context, then Close; within 5 s.
	start := time.Now()
	cancel()
	if err := <-runDone; err != nil {
		t.Fatalf("run: %v", err)
	}
	cerr := q.Close()
	closed = true
	took := time.Since(start)
	if took > 5*time.Second {
		t.Fatalf("stop on a frozen disk took %v, want under 5 s", took)
	}
	if !errors.Is(cerr, outbox.ErrCommitAbandoned) {
		t.Fatalf("close on a frozen disk: %v, want ErrCommitAbandoned", cerr)
	}
	t.Logf("RESULT frozen-disk enqueue_bound=%v stop=%v", bound, took.Round(time.Millisecond))

	thaw()
	if err := q.FinishAbandonedForTest(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	q2, err := outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	st, err := q2.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Delivered != uint64(len(acked)) {
		t.Fatalf("after the thaw: %d delivered, want the %d acknowledged", st.Delivered, len(acked))
	}
	items, err := q2.List(outbox.Pending, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if it.Key == "frozen-2" {
			t.Fatalf("the withdrawn record was stored: %+v", it)
		}
	}
}
