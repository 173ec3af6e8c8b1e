package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
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
// sequence, see SetBootSequence), unless an operator asked to send it
// without looking (Item.SkipLookup, `outbox retry --force`). A lookup that
// cannot decide (the list call ignores its filter and has more rows than a
// lookup reads) is a Retry marked Undecided: the item backs off, and
// status counts it.
//
// Kasa cards: one card is one Ödüyo id. An update without an id is sent
// with the id its card is linked to (an earlier update that carried both,
// or a lookup, see below), when there is one. When Ödüyo refuses an update
// that has no id ("status": false), the card is looked up by its
// integration_id (erp_kasa_fisi/list) and the update sent once more with
// the id found; the outbox links the card to that id (Result.Link), so
// its later updates carry it. No card found: a dead letter saying so.
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
		return s.sendKasa(ctx, it)
	case outbox.KindSpecialCode:
		if !it.SkipLookup && (it.Attempts > 0 || it.ID <= s.boot.Load()) {
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
		r.Undecided = errors.Is(err, oduyo.ErrLookupInconclusive)
		return false, r, true
	}
	if found {
		s.log.Info("special code already on the server after an attempt with an unknown outcome; not sent again",
			"id", it.ID, "key", it.Key, "attempts", it.Attempts)
	}
	return found, outbox.Result{}, false
}

// kasaIDPrefix is the key of a kasa card by its Ödüyo id (records.KasaNames).
const kasaIDPrefix = "kasa:id:"

// sendKasa sends a kasa card update; see Sender for the card's id.
func (s *Sender) sendKasa(ctx context.Context, it outbox.Item) outbox.Result {
	payload := it.Payload
	hasID := columnHasID(payload)
	if !hasID {
		for _, k := range []string{it.Key, it.LinkedKey} {
			if id, ok := strings.CutPrefix(k, kasaIDPrefix); ok && id != "" {
				payload, hasID = withID(payload, id), true
				break
			}
		}
	}
	err := s.client.UpdateKasa(ctx, it.IdempotencyKey, payload)
	var oe *oduyo.Error
	if err == nil || hasID || !errors.As(err, &oe) || oe.Class != oduyo.Permanent {
		return verdict(err)
	}
	// Refused, and it had no id: find the card's id by its integration_id.
	refused := oneLine(err.Error())
	intID := columnIntegrationID(payload)
	id, lerr := s.client.FindKasaCard(ctx, intID)
	if lerr != nil {
		r := verdict(lerr)
		if r.Verdict == outbox.Reject {
			if errors.As(lerr, &oe) && oe.Class == oduyo.Permanent {
				r.Reason = "refused by Ödüyo without an id (" + refused + ") and it cannot be looked up: " + r.Reason
				return r
			}
			r.Verdict = outbox.Retry // refused credentials on the lookup say nothing about the card
		}
		r.Undecided = errors.Is(lerr, oduyo.ErrLookupInconclusive)
		r.Reason = "refused by Ödüyo without an id (" + refused + "); looking the card up by integration_id: " + r.Reason
		return r
	}
	if id == "" {
		return outbox.Result{Verdict: outbox.Reject,
			Reason: "refused by Ödüyo without an id (" + refused + ") and Ödüyo has no kasa card with integration_id " + strconv.Quote(intID)}
	}
	s.log.Info("kasa update refused without an id; sending it again with the id found by its integration_id",
		"id", it.ID, "key", it.Key, "card_id", id)
	r := verdict(s.client.UpdateKasa(ctx, it.IdempotencyKey, withID(payload, id)))
	r.Link = kasaIDPrefix + id
	if r.Verdict != outbox.Delivered {
		r.Reason = "sent again with the id " + id + " found by integration_id " + strconv.Quote(intID) + ": " + r.Reason
	}
	return r
}

// columnHasID: the kasa column carries a non-empty "id".
func columnHasID(column json.RawMessage) bool {
	var c struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(column, &c) != nil {
		return false
	}
	v := strings.TrimSpace(string(c.ID))
	return v != "" && v != "null" && v != `""`
}

func columnIntegrationID(column json.RawMessage) string {
	var c struct {
		IntegrationID json.RawMessage `json:"integration_id"`
	}
	if json.Unmarshal(column, &c) != nil {
		return ""
	}
	var str string
	if json.Unmarshal(c.IntegrationID, &str) == nil {
		return str
	}
	return strings.TrimSpace(string(c.IntegrationID))
}

// withID returns the column with "id" first, as NormalizeKasa writes it
// (a number when id is one, else a string). The column has no id.
func withID(column json.RawMessage, id string) json.RawMessage {
	b := bytes.TrimSpace(column)
	if len(b) < 2 || b[0] != '{' {
		return column
	}
	val := strconv.Quote(id)
	if n, err := strconv.ParseUint(id, 10, 64); err == nil && n > 0 {
		val = strconv.FormatUint(n, 10)
	}
	out := make([]byte, 0, len(b)+len(val)+8)
	out = append(append(append(out, `{"id":`...), val...), ',')
	rest := bytes.TrimSpace(b[1:])
	if len(rest) > 0 && rest[0] == '}' {
		out = out[:len(out)-1]
	}
	return append(out, rest...)
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
