package agent

import (
	"context"
	"fmt"

	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/outbox"
)

// Sender adapts the Ödüyo client to the outbox: it turns a classified
// client error into an outbox verdict. Safe for concurrent use.
type Sender struct {
	client *oduyo.Client
}

// NewSender returns the outbox.Sender that delivers through c.
func NewSender(c *oduyo.Client) *Sender { return &Sender{client: c} }

var _ outbox.Sender = (*Sender)(nil)

// Send delivers one item.
func (s *Sender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	var err error
	switch it.Kind {
	case outbox.KindKasa:
		err = s.client.UpdateKasa(ctx, it.IdempotencyKey, it.Payload)
	case outbox.KindSpecialCode:
		err = s.client.CreateSpecialCode(ctx, it.IdempotencyKey, it.Payload)
	default:
		return outbox.Result{Verdict: outbox.Reject, Reason: fmt.Sprintf("unknown record kind %q", it.Kind)}
	}
	return verdict(err)
}

// verdict maps an Ödüyo client error to what the outbox does with the item.
func verdict(err error) outbox.Result {
	if err == nil {
		return outbox.Result{Verdict: outbox.Delivered}
	}
	class, retryAfter := oduyo.Classify(err)
	r := outbox.Result{RetryAfter: retryAfter, Reason: oneLine(err.Error())}
	switch class {
	case oduyo.Permanent:
		r.Verdict = outbox.Reject
	case oduyo.Auth:
		r.Verdict = outbox.Reauth
	default:
		r.Verdict = outbox.Retry
	}
	return r
}

// Probe checks that the Ödüyo server answers.
func (s *Sender) Probe(ctx context.Context) error { return s.client.Probe(ctx) }
