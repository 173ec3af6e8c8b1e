package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"

	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/outbox"
)

// Sender adapts the Ödüyo client to the outbox: it turns a classified
// client error into an outbox verdict. Safe for concurrent use.
//
// The client owns the re-login: a 401/403 is answered by one fresh login
// and one repeat inside the client, so the Sender never returns Reauth.
//
// Special codes: Ödüyo documents no idempotency, so a create whose earlier
// outcome is unknown (a timeout or a reset after the request was sent, or
// a crash of the agent while it was in flight) is first looked up by its
// integration_id; a record found there is delivered. The Sender looks up
// every special code that was attempted before (Attempts > 0) and every
// one enqueued before this process started (id at or below the boot
// sequence, see SetBootSequence).
type Sender struct {
	client *oduyo.Client
	log    *slog.Logger
	boot   atomic.Uint64 // ids at or below were enqueued by an earlier process
}

// NewSender returns the outbox.Sender that delivers through c. Until
// SetBootSequence is called, every special code is looked up before it is
// created.
func NewSender(c *oduyo.Client) *Sender {
	s := &Sender{client: c, log: slog.New(slog.DiscardHandler)}
	s.boot.Store(math.MaxUint64)
	return s
}

// SetBootSequence tells the Sender the highest outbox id that existed when
// this process opened the queue (outbox.Queue.LastID): items above it were
// enqueued by this process, so their first attempt needs no lookup.
func (s *Sender) SetBootSequence(id uint64) { s.boot.Store(id) }

// SetLogger sets where the Sender logs (nil: nowhere).
func (s *Sender) SetLogger(l *slog.Logger) {
	if l != nil {
		s.log = l
	}
}

var _ outbox.Sender = (*Sender)(nil)

// Send delivers one item.
func (s *Sender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	var err error
	switch it.Kind {
	case outbox.KindKasa:
		err = s.client.UpdateKasa(ctx, it.IdempotencyKey, it.Payload)
	case outbox.KindSpecialCode:
		if it.Attempts > 0 || it.ID <= s.boot.Load() {
			found, res, done := s.lookup(ctx, it)
			if done {
				return res
			}
			if found {
				return outbox.Result{Verdict: outbox.Delivered}
			}
		}
		err = s.client.CreateSpecialCode(ctx, it.IdempotencyKey, it.Payload)
	default:
		return outbox.Result{Verdict: outbox.Reject, Reason: fmt.Sprintf("unknown record kind %q", it.Kind)}
	}
	return verdict(err)
}

// lookup asks Ödüyo whether the special code is already there. done: the
// lookup failed and res says what to do with the item.
func (s *Sender) lookup(ctx context.Context, it outbox.Item) (found bool, res outbox.Result, done bool) {
	found, err := s.client.FindSpecialCode(ctx, it.Payload)
	var oe *oduyo.Error
	if errors.As(err, &oe) && oe.Class == oduyo.Permanent {
		// Records are validated before they are queued: this one cannot
		// be looked up, and sending it again could duplicate it.
		return false, outbox.Result{Verdict: outbox.Reject, Reason: "cannot check whether an earlier attempt stored this special code: " + oneLine(err.Error())}, true
	}
	if err != nil {
		r := verdict(err)
		if r.Verdict == outbox.Reject {
			// Refused credentials on the lookup say nothing about the record.
			r.Verdict = outbox.Retry
		}
		r.Reason = "before sending again: " + r.Reason
		return false, r, true
	}
	if found {
		s.log.Info("special code already on the server after an attempt with an unknown outcome; not sent again",
			"id", it.ID, "key", it.Key, "attempts", it.Attempts)
	}
	return found, outbox.Result{}, false
}

// verdict maps an Ödüyo client error to what the outbox does with the item.
//
//   - Permanent (Ödüyo's JSON refusal) → Reject.
//   - Auth on a record call (401/403 again right after a fresh login, with
//     Ödüyo's JSON) → Reject, the reason names the credentials.
//   - Auth at login (the credentials are refused) → Retry: every record
//     would fail alike; they wait until the configuration is fixed.
//   - Everything else, answers that are not Ödüyo's included → Retry.
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
		r.Verdict = outbox.Reject
		var oe *oduyo.Error
		if errors.As(err, &oe) && oe.Op == oduyo.OpLogin {
			r.Verdict = outbox.Retry
		}
	default:
		r.Verdict = outbox.Retry
	}
	return r
}

// Probe checks that the Ödüyo server answers as Ödüyo.
// A probe answered with Retry-After pauses the queue like a send's.
func (s *Sender) Probe(ctx context.Context) error {
	err := s.client.Probe(ctx)
	if _, ra := oduyo.Classify(err); err != nil && ra > 0 {
		return &outbox.RetryAfterError{Err: err, After: ra}
	}
	return err
}
