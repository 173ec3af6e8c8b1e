package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/tposagent/tposagent/internal/clock"
)

// Kind names what an item is; the outbox only stores it.
type Kind string

// The kinds the agent produces.
const (
	KindKasa        Kind = "kasa"
	KindSpecialCode Kind = "special_code"
	// KindUnreadable marks a dead letter made from a stored record that
	// could not be decoded; its payload holds the stored bytes
	// ({"unreadable_record_base64": ...}). It cannot be retried.
	KindUnreadable Kind = "unreadable"
)

// Entry is what a producer hands to Enqueue.
type Entry struct {
	Kind    Kind
	Key     string          // target record key: FIFO per key, parallel across keys
	Payload json.RawMessage // opaque to the outbox; must be valid JSON, stored byte for byte
	// Coalesce: a newer entry with the same Key replaces pending (never
	// in-flight) coalescable items of that key.
	Coalesce bool
	// Aliases: other names of the target record (e.g. a card's
	// integration_id beside its id); see cards.go. The stored item's Key
	// is the record's canonical key.
	Aliases []string
	// IdempotencyKey: the producer's own key (1..128 printable ASCII);
	// empty: the queue makes one up. See idempotency.go.
	IdempotencyKey string

	name   string   // Key as the producer gave it (cards.go resolves Key from it)
	links  []string // names to link to Key (cards.go)
	unlink []string // names whose links go (cards.go)
	merged []string // other keys of the same record whose pending items this entry replaces
}

// Item is one queued entry as stored.
type Item struct {
	ID             uint64          `json:"id"` // big-endian NextSequence key; FIFO order
	Kind           Kind            `json:"kind"`
	Key            string          `json:"key"`
	Payload        json.RawMessage `json:"payload"`
	IdempotencyKey string          `json:"idempotency_key"` // stable, generated at enqueue, sent as Idempotency-Key by the sender
	Created        time.Time       `json:"created"`
	Attempts       int             `json:"attempts"`
	NextAttempt    time.Time       `json:"next_attempt"` // zero: due now
	LastError      string          `json:"last_error,omitempty"`
	Coalesce       bool            `json:"coalesce,omitempty"`
	DeadReason     string          `json:"dead_reason,omitempty"` // dead-letter only
	DeadAt         time.Time       `json:"dead_at,omitzero"`      // dead-letter only
	InFlight       bool            `json:"in_flight,omitempty"`   // List only: being sent right now
	// SkipLookup: an operator asked to send it without looking it up
	// first (outbox retry --force on a pending item); the sender honours it.
	SkipLookup bool `json:"skip_lookup,omitempty"`
	// Undecided: its last attempt waited for a lookup that could not
	// decide whether an earlier attempt had delivered it (Result.Undecided).
	Undecided bool `json:"undecided,omitempty"`
	// LinkedKey (to the sender only): the key its Key is linked to now,
	// e.g. a card's id key for an update that named the card by its
	// integration_id alone (cards.go); "" when none.
	LinkedKey string `json:"linked_key,omitempty"`

	turn uint64 // its place among due heads: the id of the oldest item it replaced (0: its own)
}

// turnOf is the id that orders the item among due heads.
func (it Item) turnOf() uint64 {
	if it.turn != 0 && it.turn < it.ID {
		return it.turn
	}
	return it.ID
}

func minTurn(a, b uint64) uint64 {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// Verdict is the sender's classification of one delivery attempt.
type Verdict int

// Verdicts.
const (
	Delivered Verdict = iota // success: delete
	Retry                    // transient: backoff with full jitter, capped; RetryAfter honoured
	Reauth                   // 401/403: sender has re-authenticated; retry at once, once (a second Reauth counts as Retry). The agent's sender never returns it: its Ödüyo client owns the re-login (one per attempt).
	Reject                   // permanent: dead letter with Reason
)

func (v Verdict) String() string {
	switch v {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Reauth:
		return "reauth"
	case Reject:
		return "reject"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Result is what a Sender returns for one item.
type Result struct {
	Verdict Verdict
	// RetryAfter comes from Retry-After (the sender parses seconds or an
	// HTTP date); > 0 (429/503) pauses ALL sending until it has passed.
	RetryAfter time.Duration
	Reason     string // human text for LastError / DeadReason (never a secret)
	// Undecided (with Retry): the sender could not tell whether an earlier
	// attempt delivered the item (a lookup that cannot decide). The item
	// backs off like any retry; Stats counts such items and says why.
	Undecided bool
	// Link: the sender learned the key of the item's record (a card's id
	// found by its integration_id); the item's Key is linked to it from
	// now on (cards.go). "" when none.
	Link string
}

// Sender delivers items; implemented by the agent (adapting the Ödüyo
// client). It must be safe for concurrent use: up to Options.Concurrency
// Sends and one Probe run at once. Send must honour ctx.
type Sender interface {
	Send(ctx context.Context, it Item) Result
	// Probe is a cheap reachability check, run after a transient failure
	// and on a backoff while offline; nil means the server is reachable.
	// An error that is (or wraps) a *RetryAfterError pauses the queue as a
	// send's Retry-After does.
	Probe(ctx context.Context) error
}

// RetryAfterError is a failed Probe whose server asked for a wait
// (Retry-After on a 429/503): the queue pauses until it has passed
// (capped at Options.RetryAfterMax), and probes again only after it.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// State selects the list of items.
type State int

// States for List.
const (
	Pending State = iota // waiting or in flight (Item.InFlight)
	Dead                 // dead letters
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Dead:
		return "dead"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// ParseState parses "pending" or "dead" (as in ?state=).
func ParseState(s string) (State, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "pending":
		return Pending, nil
	case "dead":
		return Dead, nil
	}
	return 0, fmt.Errorf("parse outbox state %q: want pending or dead", s)
}

// Stats describes the queue.
type Stats struct {
	// Pending counts every accepted item not yet delivered or dead,
	// those being sent included; InFlight is the part being sent now.
	Pending, InFlight, Dead int
	OldestPendingAge        time.Duration
	Bytes                   int64 // file size on disk
	Online                  bool  // last send/probe reached the server
	Offline                 bool  // sending is suspended until a probe succeeds
	// PausedUntil is the end of a server's Retry-After pause (at most
	// Options.RetryAfterMax away); zero when there is none. A probe that
	// succeeds after the pause began, or Retry on a pending item, ends it.
	PausedUntil time.Time
	LastSuccess time.Time
	LastError   string
	LastErrorAt time.Time
	// Lifetime counters, persisted in the file so they survive restarts.
	Enqueued, Delivered, Coalesced, DeadLettered uint64
	Quarantined                                  string // path of a file moved aside at Open, "" if none
	// FileGone says that the file was deleted or replaced while the
	// agent ran, where its content was saved, and that new records are
	// refused until a restart; "" normally.
	FileGone string
	// Closed says why the file is not open (it could not be opened at
	// start, or again after compaction): records are refused until it
	// opens, and the queue keeps trying every second; "" normally.
	Closed        string
	QuarantinedAt time.Time
	Compactions   int // compactions since Open
	// Undecided counts the pending items whose last attempt waited for a
	// lookup that could not decide; UndecidedReason is the oldest one's
	// last error ("" when none). `outbox retry --force ID` sends one
	// without looking.
	Undecided       int
	UndecidedReason string
	// CardConflicts counts the links that moved from one record to
	// another since Open (one integration_id paired with two card ids);
	// LastCardConflict describes the newest.
	CardConflicts      uint64
	LastCardConflict   string
	LastCardConflictAt time.Time
	Cards              CardCounts // size of the card table (links, delivered marks)
	// Bookkeeping: what the queue keeps beside its records, per kind
	// (janitor.go).
	Bookkeeping Bookkeeping
	// Unrecorded counts send results whose commit failed: their records
	// are held (not sent again) while the commit is retried with backoff;
	// UnrecordedError is "delivery results cannot be recorded: …" (also
	// in LastError). 0 and "" normally.
	Unrecorded      int
	UnrecordedError string
	// Emptied says that the file was found emptied, shorter or older than
	// what the queue had committed (state.go); "" normally.
	Emptied string
}

// Options configure Open. Zero values take the defaults.
type Options struct {
	Path        string        // bbolt file, e.g. <data_dir>/outbox.db
	MaxSize     int64         // default 256 MiB; Enqueue returns ErrFull beyond it
	Concurrency int           // default 4 parallel keys
	RetryBase   time.Duration // default 1s
	RetryMax    time.Duration // default 5m
	// RetryAfterMax caps a server's Retry-After (default 1h): a longer
	// pause is shortened to it.
	RetryAfterMax time.Duration
	// ReconnectJitter: random 0..N before a probe nobody asked for (a
	// Kick, the offline backoff) and before the first send after Run
	// starts; 0 means none (the agent passes 30s in production).
	ReconnectJitter time.Duration
	OpenTimeout     time.Duration // bbolt Options.Timeout, default 1s
	// StopGrace bounds how long Run lets in-flight sends finish after its
	// context is done (real time, default 4s).
	StopGrace time.Duration
	// EnqueueTimeout bounds how long Enqueue waits for its commit (real
	// time, default 10s): on a frozen or failing disk it fails with
	// ErrCommitTimeout instead (the record is not acknowledged).
	EnqueueTimeout time.Duration
	// CloseTimeout bounds how long Close waits for a commit that is
	// running (real time, default 2s); then the commit is abandoned and
	// its requests answered with ErrCommitAbandoned (faults.go).
	CloseTimeout time.Duration
	// CompactMinSize: a drained file is compacted when it is at least this
	// big and at least four times its live content. Default 8 MiB; < 0 never.
	CompactMinSize int64
	// CheckMaxSize: files up to this size get a full bbolt consistency
	// check at Open (bigger ones a cheap one). Default 64 MiB; < 0 never.
	CheckMaxSize int64
	// KeepTrying: when the file cannot be opened for a reason that is not
	// its content nor another process's lock (an I/O error, a directory at
	// the path, a sharing violation that lasts), Open does not fail. The
	// queue starts closed: records are refused with ErrClosed and the
	// reason, Stats.LastError says it, and the queue tries to open the
	// file every second (the agent sets it, so that a failing disk does
	// not make the service crash-loop while the licence is still served).
	KeepTrying bool
	// DeadLetterTTL: a dead letter is expired this long after it died
	// (default 30 days); DeadLetterMax: beyond this many (default
	// 10,000) the oldest expire first, younger or not. JanitorEvery:
	// how often the janitor prunes the bookkeeping (default 5 min, on
	// Clock). See janitor.go.
	DeadLetterTTL time.Duration
	DeadLetterMax int
	JanitorEvery  time.Duration
	// CardLimit bounds the card links and, separately, the delivered
	// marks kept for records with nothing pending (default 10,000 each);
	// CardTTL is their age limit (default 30 days). Each kind is also
	// kept under MaxSize/16 bytes. See cards.go.
	CardLimit int
	CardTTL   time.Duration
	Clock     clock.Clock    // nil = real time
	Rand      func() float64 // nil = math/rand/v2; in [0,1), for jitter
	Logger    *slog.Logger   // nil = discard

	batchLimit int // requests per transaction (tests: 1 = naive baseline)
}

// Errors returned by the queue.
var (
	ErrFull         = errors.New("outbox is full")
	ErrNotFound     = errors.New("outbox item not found")
	ErrInFlight     = errors.New("outbox item is being sent")
	ErrLocked       = errors.New("outbox file is locked by another process (is the agent already running?)")
	ErrClosed       = errors.New("outbox is closed")
	ErrInvalidEntry = errors.New("invalid outbox entry")
	ErrRunning      = errors.New("outbox sender loop is already running")
	ErrFileGone     = errors.New("outbox file was deleted or replaced while the agent ran")
	ErrUnreadable   = errors.New("outbox item is an unreadable record and cannot be sent (drop it)")
)

const (
	defaultMaxSize        = 256 << 20
	defaultConcurrency    = 4
	defaultRetryBase      = time.Second
	defaultRetryMax       = 5 * time.Minute
	defaultRetryAfterMax  = time.Hour
	defaultOpenTimeout    = time.Second
	defaultStopGrace      = 4 * time.Second
	defaultEnqueueTimeout = 10 * time.Second
	defaultCloseTimeout   = 2 * time.Second
	defaultCompactMinSize = 8 << 20
	defaultCheckMaxSize   = 64 << 20
	maxKeyLen             = 1024
)

func (o *Options) setDefaults() {
	if o.MaxSize <= 0 {
		o.MaxSize = defaultMaxSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = defaultConcurrency
	}
	if o.RetryBase <= 0 {
		o.RetryBase = defaultRetryBase
	}
	if o.RetryMax <= 0 {
		o.RetryMax = defaultRetryMax
	}
	if o.RetryMax < o.RetryBase {
		o.RetryMax = o.RetryBase
	}
	if o.RetryAfterMax <= 0 {
		o.RetryAfterMax = defaultRetryAfterMax
	}
	if o.ReconnectJitter < 0 {
		o.ReconnectJitter = 0
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = defaultOpenTimeout
	}
	if o.StopGrace <= 0 {
		o.StopGrace = defaultStopGrace
	}
	if o.EnqueueTimeout <= 0 {
		o.EnqueueTimeout = defaultEnqueueTimeout
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = defaultCloseTimeout
	}
	if o.CompactMinSize == 0 {
		o.CompactMinSize = defaultCompactMinSize
	}
	if o.CardLimit <= 0 {
		o.CardLimit = DefaultCardLimit
	}
	if o.CardTTL <= 0 {
		o.CardTTL = DefaultCardTTL
	}
	if o.CheckMaxSize == 0 {
		o.CheckMaxSize = defaultCheckMaxSize
	}
	if o.DeadLetterTTL <= 0 {
		o.DeadLetterTTL = DefaultDeadLetterTTL
	}
	if o.DeadLetterMax <= 0 {
		o.DeadLetterMax = DefaultDeadLetterMax
	}
	if o.JanitorEvery <= 0 {
		o.JanitorEvery = defaultJanitorEvery
	}
	if o.batchLimit <= 0 {
		o.batchLimit = maxBatch
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func validateEntry(e Entry) error {
	switch {
	case e.Kind == "":
		return fmt.Errorf("%w: empty kind", ErrInvalidEntry)
	case e.Key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidEntry)
	case len(e.Key) > maxKeyLen:
		return fmt.Errorf("%w: key longer than %d bytes", ErrInvalidEntry, maxKeyLen)
	case !json.Valid(e.Payload):
		return fmt.Errorf("%w: payload is not valid JSON", ErrInvalidEntry)
	case e.IdempotencyKey != "" && !validIdempotencyKey(e.IdempotencyKey):
		return fmt.Errorf("%w: idempotency key must be 1..%d printable ASCII characters", ErrInvalidEntry, MaxIdempotencyKeyLen)
	case len(e.Aliases) > 8:
		return fmt.Errorf("%w: more than 8 aliases", ErrInvalidEntry)
	}
	for _, a := range e.Aliases {
		if a == "" || len(a) > maxKeyLen {
			return fmt.Errorf("%w: empty alias or alias longer than %d bytes", ErrInvalidEntry, maxKeyLen)
		}
	}
	return nil
}
