package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Queue is the durable queue behind the record endpoints. Implementations
// are safe for concurrent use. Enqueue returns only once the record is
// durable. Failures wrap ErrFull, ErrNotFound, ErrInFlight,
// ErrIdempotencyConflict or ErrSuperseded where those apply; any other
// error is a storage failure, answered with 503.
type Queue interface {
	Enqueue(ctx context.Context, r Record) (Accepted, error)
	// Page calls fn with up to limit items of state whose id is above
	// after, oldest first, and returns the id of the last item passed to
	// fn and whether more follow it. It holds a bounded amount of the
	// queue in memory whatever limit is, and calls fn outside any lock or
	// transaction of the queue. An error of fn ends it and is returned.
	Page(state State, after uint64, limit int, fn func(ItemView) error) (last uint64, more bool, err error)
	// Retry moves a dead item back to the queue; on a pending item it
	// means "send now" (ending a server's pause). Unless force, a dead
	// item fails with ErrSuperseded when a newer update of the same record
	// was delivered (the retry would leave the record in the older state).
	Retry(id uint64, force bool) error
	// Drop deletes a pending or dead item.
	Drop(id uint64) error
}

// Errors a Queue wraps.
var (
	ErrFull     = errors.New("queue is full")
	ErrNotFound = errors.New("no such item")
	ErrInFlight = errors.New("item is being sent")
	// ErrUnsendable: a dead item that can never be sent (a damaged
	// record kept for inspection); it can only be dropped.
	ErrUnsendable = errors.New("item cannot be sent")
	// ErrIdempotencyConflict: the Idempotency-Key was used for another record.
	ErrIdempotencyConflict = errors.New("idempotency key used for another record")
	// ErrSuperseded: a newer update of the record was delivered.
	ErrSuperseded = errors.New("a newer update of the same record was delivered")
	// ErrMaybeStored: the disk did not confirm the record in time while it
	// was being written; it is not acknowledged but may still be stored.
	ErrMaybeStored = errors.New("the record may still be stored")
)

// Kind names what a record is.
type Kind string

// The record kinds of the API.
const (
	KindKasa        Kind = "kasa"
	KindSpecialCode Kind = "special_code"
)

// Record is one validated record to queue: Column is the canonical column
// object from agent/records and Key the target record's key (FIFO per key).
type Record struct {
	Kind   Kind
	Key    string
	Column json.RawMessage
	// IdempotencyKey is the caller's Idempotency-Key header ("" if none):
	// a repeat with the same key and record answers the first Accepted
	// and stores nothing.
	IdempotencyKey string
}

// State selects the items GET /v1/outbox lists.
type State int

// States.
const (
	Pending State = iota // waiting or being sent
	Dead                 // dead letters
)

// Accepted is the body of a 202.
type Accepted struct {
	ID  uint64 `json:"id"`
	Key string `json:"key"`
}

// ItemView is one queue entry in GET /v1/outbox.
type ItemView struct {
	ID          uint64          `json:"id"`
	Kind        Kind            `json:"kind"`
	Key         string          `json:"key"`
	Created     time.Time       `json:"created"`
	Attempts    int             `json:"attempts"`
	NextAttempt *time.Time      `json:"next_attempt,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	DeadReason  string          `json:"dead_reason,omitempty"`
	DeadAt      *time.Time      `json:"dead_at,omitempty"`
	Payload     json.RawMessage `json:"payload"`
}
