package outbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Enqueue stores e and returns the stored item once the commit is on disk
// (fsync). Concurrent calls share commits. It fails with ErrFull when the
// file would grow beyond Options.MaxSize (nothing accepted is dropped),
// ErrInvalidEntry for an empty kind or key or a payload that is not JSON,
// and ErrClosed after Close. If ctx ends first the item may still be stored.
func (q *Queue) Enqueue(ctx context.Context, e Entry) (Item, error) {
	if err := validateEntry(e); err != nil {
		return Item{}, fmt.Errorf("enqueue: %w", err)
	}
	r := &enqueueReq{e: e, reply: make(chan enqueueRes, 1)}
	select {
	case q.reqs <- r:
	case <-q.quit:
		return Item{}, fmt.Errorf("enqueue: %w", ErrClosed)
	case <-ctx.Done():
		return Item{}, fmt.Errorf("enqueue: %w", ctx.Err())
	}
	wait := time.NewTimer(q.opts.EnqueueTimeout) // a frozen disk (faults.go)
	defer wait.Stop()
	select {
	case res := <-r.reply:
		q.kickJanitorIfFull(res.err)
		return res.it, res.err
	case <-wait.C:
		return q.enqueueTimedOut(r)
	case <-q.done:
		select {
		case res := <-r.reply:
			return res.it, res.err
		default:
			return Item{}, fmt.Errorf("enqueue: %w", ErrClosed)
		}
	case <-ctx.Done():
		return Item{}, fmt.Errorf("enqueue (the item may still be stored): %w", ctx.Err())
	}
}

func (q *Queue) admin(op adminOp, id uint64) error {
	r := &adminReq{op: op, id: id, reply: make(chan error, 1)}
	select {
	case q.reqs <- r:
	case <-q.quit:
		return ErrClosed
	}
	select {
	case err := <-r.reply:
		return err
	case <-q.done:
		select {
		case err := <-r.reply:
			return err
		default:
			return ErrClosed
		}
	}
}

// Retry moves a dead item back to pending with its attempts reset; it
// keeps its id, so it is the next to go for its key. ErrNotFound if id is
// not a dead item.
func (q *Queue) Retry(id uint64) error { return q.admin(opRetry, id) }

// Drop deletes a pending or dead item. ErrInFlight while it is being sent,
// ErrNotFound if there is no such item.
func (q *Queue) Drop(id uint64) error { return q.admin(opDrop, id) }

// view runs fn in a read transaction on the current file.
func (q *Queue) view(fn func(t *txb) error) error {
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	if q.db == nil || q.closed() {
		return ErrClosed
	}
	read := func(tx *bolt.Tx) error {
		t, err := openTxb(tx)
		if err != nil {
			return err
		}
		return fn(t)
	}
	err := q.fileShort() // a fault on the mapping is an error (faults.go)
	if err == nil {
		err = q.guard(func() error { return q.db.View(read) })
	}
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		q.mu.Lock()
		why := q.pub.reopenErr
		q.mu.Unlock()
		if why != "" {
			return fmt.Errorf("%w: %s (%w)", ErrClosed, why, err)
		}
	}
	return err
}

// Stats returns counts, connectivity and lifetime counters. It reads only
// the oldest item, never the whole queue.
func (q *Queue) Stats() (Stats, error) {
	q.mu.Lock()
	p := q.pub
	q.mu.Unlock()
	st := Stats{
		Pending: p.pending, InFlight: p.inFlight, Dead: p.dead, Online: p.online, Offline: p.offline,
		PausedUntil: p.pausedUntil, LastSuccess: p.lastSuccess, LastError: p.lastError, LastErrorAt: p.lastErrorAt,
		Enqueued: p.enqueued, Delivered: p.delivered, Coalesced: p.coalesced, DeadLettered: p.deadLettered,
		Quarantined: p.quarantined, QuarantinedAt: p.quarantinedAt, Compactions: p.compactions, FileGone: p.gone,
		Bookkeeping: q.bookkeeping(p.dead),
		Unrecorded:  p.unrecorded, UnrecordedError: p.unrecordedWhy, Emptied: p.emptied, // faults.go, state.go
	}
	if st.FileGone == "" {
		what := q.fileGone()
		if what != "" {
			select { // the loop reacts; this call reports it already
			case q.goneHint <- what:
			default:
			}
			st.FileGone = fmt.Sprintf("outbox file %s was %s while the agent ran", q.path, what)
		}
	}
	if p.reopenErr != "" {
		st.LastError, st.Closed = p.reopenErr, p.reopenErr
		if st.Unrecorded > 0 {
			// Why the held results cannot be recorded now: the file is
			// not open (a bbolt panic after a failed commit reopens it,
			// faults.go, and the reopen fails while the disk does).
			st.UnrecordedError = unrecordedPrefix + p.reopenErr
			st.LastError = st.UnrecordedError
		}
		return st, nil
	}
	q.cards.mu.Lock()
	st.CardConflicts, st.LastCardConflict, st.LastCardConflictAt = q.cards.conflicts, q.cards.lastConflict, q.cards.lastConflictAt
	q.cards.mu.Unlock()
	err := q.view(func(t *txb) error {
		if k, v := t.items.Cursor().First(); len(k) == 8 {
			if it, err := decodeRecord(0, v); err == nil && !it.Created.IsZero() {
				st.OldestPendingAge = max(q.clock.Now().Sub(it.Created), 0)
			}
		}
		st.Undecided, st.UndecidedReason = undecidedView(t.tx, t.items)
		st.Cards = cardCounts(t.tx)
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		// Closed by a compaction whose reopen failed: reported above once
		// the loop has published it; not an error of Stats.
		st.LastError = "outbox file is closed: cannot open it again after compaction"
		err = nil
	}
	if err != nil {
		return st, fmt.Errorf("outbox stats: %w", err)
	}
	if fi, err := os.Stat(q.path); err == nil {
		st.Bytes = fi.Size()
	}
	return st, nil
}

// DefaultListLimit applies when List is called with limit <= 0.
const DefaultListLimit = 1000

// List returns up to limit items of the given state, oldest first, in
// one slice (Page without the bound on memory; for tools and tests).
// Pending items being sent have InFlight set.
func (q *Queue) List(state State, limit int) ([]Item, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	var out []Item
	_, _, err := q.Page(state, 0, limit, func(it Item) error {
		out = append(out, it)
		return nil
	})
	return out, err
}

// pageChunkBytes bounds the stored bytes Page copies out of one read
// transaction (a single bigger record is read alone).
const pageChunkBytes = 256 << 10

// Page calls fn with up to limit items of the given state whose id is
// above after, oldest first, and returns the id of the last item passed
// to fn (after when none) and whether more items follow it. It holds at
// most pageChunkBytes of records (or one record) in memory whatever
// limit is: the items are read in short read transactions, and fn runs
// outside them, so a slow consumer (an HTTP client) never holds the file.
// It is not a snapshot: an item delivered, retried or dropped meanwhile
// may be missing or appear in the other state; none appears twice in one
// state. A record that cannot be decoded comes with its error in
// LastError. An error of fn ends the walk and is returned.
func (q *Queue) Page(state State, after uint64, limit int, fn func(Item) error) (last uint64, more bool, err error) {
	if state != Pending && state != Dead {
		return after, false, fmt.Errorf("list outbox: unknown state %d", int(state))
	}
	q.mu.Lock()
	flying := q.pub.inFlightIDs
	q.mu.Unlock()
	last = after
	chunk := make([]Item, 0, 64)
	for limit > 0 && last < ^uint64(0) {
		chunk = chunk[:0]
		more = false
		err := q.view(func(t *txb) error {
			b := t.items
			if state == Dead {
				b = t.dead
			}
			c := b.Cursor()
			size := 0
			k, v := c.Seek(idKey(last + 1))
			for ; k != nil && len(chunk) < min(limit, cap(chunk)) && size < pageChunkBytes; k, v = c.Next() {
				if len(k) != 8 {
					continue
				}
				id := idFromKey(k)
				it, err := decodeRecord(id, v)
				if err != nil {
					it = Item{ID: id, LastError: err.Error()}
				}
				it.InFlight = state == Pending && flying[id]
				chunk = append(chunk, it)
				size += len(v)
			}
			for ; k != nil && len(k) != 8; k, _ = c.Next() {
			}
			more = k != nil
			return nil
		})
		if err != nil {
			return last, false, fmt.Errorf("list outbox %s: %w", state, err)
		}
		for i := range chunk {
			if err := fn(chunk[i]); err != nil {
				return last, false, err
			}
			last = chunk[i].ID
			chunk[i] = Item{} // the payload may go before the next is read
			limit--
		}
		if !more {
			return last, false, nil
		}
	}
	return last, more, nil
}

// Get returns one pending or dead item; ErrNotFound otherwise.
func (q *Queue) Get(id uint64) (Item, State, error) {
	var it Item
	var st State
	found := false
	err := q.view(func(t *txb) error {
		for _, s := range []State{Pending, Dead} {
			b := t.items
			if s == Dead {
				b = t.dead
			}
			if v := b.Get(idKey(id)); v != nil {
				var err error
				it, err = decodeRecord(id, v)
				st, found = s, true
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Item{}, 0, fmt.Errorf("get outbox item %d: %w", id, err)
	}
	if !found {
		return Item{}, 0, fmt.Errorf("get outbox item %d: %w", id, ErrNotFound)
	}
	q.mu.Lock()
	it.InFlight = q.pub.inFlightIDs[id]
	q.mu.Unlock()
	return it, st, nil
}
