package outboxtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tposagent/tposagent/outbox"
	"github.com/tposagent/tposagent/outbox/outboxtest"
)

func TestClockFiresInOrderAndStops(t *testing.T) {
	c := outboxtest.NewClock(time.Time{})
	start := c.Now()
	t2 := c.NewTimer(2 * time.Second)
	t1 := c.NewTimer(time.Second)
	t3 := c.NewTimer(3 * time.Second)
	if err := c.BlockUntil(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if !t3.Stop() || t3.Stop() {
		t.Fatal("Stop should report true once")
	}
	c.Advance(2 * time.Second)
	for i, tm := range []outbox.Timer{t1, t2} {
		select {
		case at := <-tm.C():
			if !at.Equal(start.Add(2 * time.Second)) {
				t.Errorf("timer %d fired at %v", i, at)
			}
		default:
			t.Fatalf("timer %d did not fire", i)
		}
	}
	if c.Pending() != 0 {
		t.Fatalf("pending %d", c.Pending())
	}
	select {
	case <-c.NewTimer(0).C():
	default:
		t.Fatal("a zero timer must fire at once")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.BlockUntil(ctx, 1); err == nil {
		t.Fatal("BlockUntil ignored its context")
	}
}

func TestSenderScripts(t *testing.T) {
	s := outboxtest.NewSender()
	s.ScriptKey("k", outbox.Result{Verdict: outbox.Retry}, outbox.Result{Verdict: outbox.Reject})
	s.ScriptID(7, outbox.Result{Verdict: outbox.Reauth})
	s.ScriptProbe(errors.New("down"))
	ctx := context.Background()
	got := []outbox.Verdict{
		s.Send(ctx, outbox.Item{ID: 7, Key: "k"}).Verdict,
		s.Send(ctx, outbox.Item{ID: 8, Key: "k"}).Verdict,
		s.Send(ctx, outbox.Item{ID: 9, Key: "k"}).Verdict,
		s.Send(ctx, outbox.Item{ID: 10, Key: "k"}).Verdict,
	}
	want := []outbox.Verdict{outbox.Reauth, outbox.Retry, outbox.Reject, outbox.Delivered}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("verdicts %v, want %v", got, want)
		}
	}
	if s.Probe(ctx) == nil || s.Probe(ctx) != nil || s.Probes() != 2 {
		t.Fatal("probe script")
	}
	if len(s.CallsFor("k")) != 4 || s.WaitCalls(ctx, 4) != nil {
		t.Fatal("calls")
	}
}
