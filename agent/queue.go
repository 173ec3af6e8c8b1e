package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/outbox"
)

// LocalQueue adapts the outbox to the local API's Queue: kasa updates
// coalesce (each carries the full card state), special codes never do,
// and the outbox's errors become the API's.
func LocalQueue(q *outbox.Queue) localapi.Queue { return localQueue{q: q} }

// localQueue is the agent's: it also keeps the health of enqueues for
// status and /metrics.
func (a *Agent) localQueue() localapi.Queue { return localQueue{q: a.queue, health: &a.enqueues} }

type localQueue struct {
	q      *outbox.Queue
	health *enqueueHealth // nil: not kept
}

func (l localQueue) Enqueue(ctx context.Context, r localapi.Record) (localapi.Accepted, error) {
	e := outbox.Entry{Kind: outbox.Kind(r.Kind), Key: r.Key, Payload: r.Column, Coalesce: r.Kind == localapi.KindKasa,
		IdempotencyKey: r.IdempotencyKey}
	if r.Kind == localapi.KindKasa {
		// One card, one key: the card's other name maps to the same key.
		for _, n := range records.KasaNames(r.Column) {
			if n != r.Key {
				e.Aliases = append(e.Aliases, n)
			}
		}
	}
	it, err := l.q.Enqueue(ctx, e)
	if l.health != nil && !callersMistake(err) {
		l.health.record(err, time.Now())
	}
	if err != nil {
		return localapi.Accepted{}, apiError(err)
	}
	return localapi.Accepted{ID: it.ID, Key: it.Key}, nil
}

// callersMistake: the enqueue failed because of the caller, not because
// records cannot be stored — an idempotency key reused with another body
// (409), an invalid entry, or a caller that went away. It neither counts
// as a failure nor ends a run of them.
func callersMistake(err error) bool {
	return errors.Is(err, outbox.ErrIdempotencyConflict) || errors.Is(err, outbox.ErrInvalidEntry) ||
		errors.Is(err, context.Canceled)
}

// enqueueHealth says whether records can be stored: a full queue or a
// full or failing disk turns every POST into a 503, and the store staff
// must see that in status, not only the POS.
type enqueueHealth struct {
	mu        sync.Mutex
	failures  uint64    // failed enqueues since start
	lastError string    // the last failure's error
	lastAt    time.Time // when it happened
	since     time.Time // first failure of the current run of failures; zero after a success
}

func (h *enqueueHealth) record(err error, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.since = time.Time{}
		return
	}
	h.failures++
	h.lastError, h.lastAt = oneLine(err.Error()), now
	if h.since.IsZero() {
		h.since = now
	}
}

func (h *enqueueHealth) view() localapi.Enqueues {
	h.mu.Lock()
	defer h.mu.Unlock()
	return localapi.Enqueues{Failures: h.failures, LastError: h.lastError, LastErrorAt: timePtr(h.lastAt), FailingSince: timePtr(h.since)}
}

// Page lists in bounded memory (outbox.Queue.Page).
func (l localQueue) Page(state localapi.State, after uint64, limit int, fn func(localapi.ItemView) error) (uint64, bool, error) {
	s := outbox.Pending
	if state == localapi.Dead {
		s = outbox.Dead
	}
	last, more, err := l.q.Page(s, after, limit, func(it outbox.Item) error { return fn(itemView(it)) })
	return last, more, apiError(err)
}

func itemView(it outbox.Item) localapi.ItemView {
	return localapi.ItemView{
		ID: it.ID, Kind: localapi.Kind(it.Kind), Key: it.Key, Created: it.Created, Attempts: it.Attempts,
		NextAttempt: timePtr(it.NextAttempt), LastError: it.LastError,
		DeadReason: it.DeadReason, DeadAt: timePtr(it.DeadAt), Payload: it.Payload,
	}
}

func (l localQueue) Retry(id uint64, force bool) error {
	if force {
		return apiError(l.q.ForceRetry(id))
	}
	return apiError(l.q.Retry(id))
}
func (l localQueue) Drop(id uint64) error { return apiError(l.q.Drop(id)) }

// apiError keeps err's text and chain and adds the local API's sentinel.
func apiError(err error) error {
	var sentinel error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, outbox.ErrFull):
		sentinel = localapi.ErrFull
	case errors.Is(err, outbox.ErrNotFound):
		sentinel = localapi.ErrNotFound
	case errors.Is(err, outbox.ErrInFlight):
		sentinel = localapi.ErrInFlight
	case errors.Is(err, outbox.ErrUnreadable):
		sentinel = localapi.ErrUnsendable
	case errors.Is(err, outbox.ErrIdempotencyConflict):
		sentinel = localapi.ErrIdempotencyConflict
	case errors.Is(err, outbox.ErrSuperseded):
		sentinel = localapi.ErrSuperseded
	case errors.Is(err, outbox.ErrMaybeStored):
		sentinel = localapi.ErrMaybeStored
	default:
		return err
	}
	return fmt.Errorf("%w (%w)", err, sentinel)
}
