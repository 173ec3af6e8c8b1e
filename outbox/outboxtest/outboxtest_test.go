package outboxtest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tposagent/tposagent/outbox"
	"github.com/tposagent/tposagent/outbox/outboxtest"
)

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
