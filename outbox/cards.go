package outbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// One record, one key. A target record may be known by several names —
// a kasa card by its Ödüyo id and by its ERP integration_id, and an
// update may carry either or both. Entry.Aliases gives the other names of
// Entry.Key; the queue keeps a durable map from every name it has seen to
// one canonical key, so that every entry for the record shares one FIFO
// key and coalesces, whichever names it carries.
//
// The canonical key of an entry is the mapping of the first of its names
// (Key, then Aliases) that has one, else Key. Names without a mapping are
// mapped to it in the transaction that stores the entry (for entries with
// Aliases or Coalesce; others keep their Key untouched). When the names
// of one entry already map to two different keys (the record was first
// seen under each name alone), the entry links them: the other key's
// names are mapped to the chosen one from then on, and a coalescing entry
// replaces the coalescable items pending under the other key as it does
// under its own (it carries the full, newer state). An item of the other
// key that is being sent at that moment cannot be replaced; it may reach
// the server after the linking entry (a warning is logged).
//
// The map lives in the bucket "alias" (name -> canonical key); the loop
// goroutine keeps a copy in memory, loaded on first use, so that the key
// is known before the commit that stores the entry is planned.
//
// A retry never regresses a record. The bucket "done" keeps, per
// canonical key of coalescing items, the id and time of the newest
// delivery. Retry of a dead coalescing item older than that fails with
// ErrSuperseded; ForceRetry sends it anyway.

var (
	bucketAlias = []byte("alias") // name -> canonical key
	bucketDone  = []byte("done")  // canonical key -> id(8) unix ns(8) of the newest delivered coalescing item
)

// ErrSuperseded: a newer item of the same record was delivered after this
// dead one was enqueued; sending it now would leave the record in the
// older state.
var ErrSuperseded = errors.New("a newer update of the same record was delivered")

// cardIndex is the loop's in-memory copy of the alias bucket.
type cardIndex struct {
	canon map[string]string
}

// loadCards reads the alias bucket (loop goroutine).
func (q *Queue) loadCards() (*cardIndex, error) {
	ci := &cardIndex{canon: map[string]string{}}
	err := q.view(func(t *txb) error {
		b := t.tx.Bucket(bucketAlias)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			ci.canon[string(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load outbox aliases: %w", err)
	}
	return ci, nil
}

// resolveKey sets e.Key to the canonical key of e's names and notes the
// names to map in e.aliasWrites (loop goroutine, before the commit is
// planned). On a read error the entry keeps its key.
func (q *Queue) resolveKey(e *Entry) {
	if q.cards == nil {
		ci, err := q.loadCards()
		if err != nil {
			q.log.Error("outbox aliases unreadable; keys are not merged", "err", err)
			return
		}
		q.cards = ci
	}
	ci := q.cards
	names := append([]string{e.Key}, e.Aliases...)
	canon := ""
	for _, n := range names {
		if c, ok := ci.canon[n]; ok {
			canon = c
			break
		}
	}
	if canon == "" {
		if len(e.Aliases) == 0 && !e.Coalesce {
			return // not updated in place (special codes): nothing to map
		}
		canon = e.Key // a record seen for the first time
	}
	// Every name of the entry is written (putAliases skips what the file
	// already holds), so the file converges even when this copy ran ahead
	// of a commit that failed.
	var writes []string
	note := func(n string) {
		ci.canon[n] = canon
		if !slices.Contains(writes, n) {
			writes = append(writes, n)
		}
	}
	note(canon)
	for _, n := range names {
		if old, ok := ci.canon[n]; ok && old != canon && n != canon && !slices.Contains(writes, n) {
			// Two keys of one record: link the other key's names too.
			q.log.Warn("outbox: two keys turn out to name one record; later items use one key",
				"key", canon, "other", old)
			if !slices.Contains(e.merged, old) {
				e.merged = append(e.merged, old)
			}
			for m, c := range ci.canon {
				if c == old {
					note(m)
				}
			}
		}
		note(n)
	}
	e.Key = canon
	e.aliasWrites = writes
}

// coalesceMerged removes the coalescable items pending under the keys e
// links to its own (never one in flight) and returns the latest due time
// among them.
func (t *txb) coalesceMerged(job *commitJob, e Entry, c *counters) (int64, error) {
	var inherit int64
	for _, k := range e.merged {
		flying, isFlying := job.flying[k]
		removed := false
		for _, id := range t.keyIDs(k) {
			if isFlying && id == flying {
				continue
			}
			old, ok, err := t.getItem(id)
			if err != nil || !ok || !old.Coalesce || old.Kind != e.Kind {
				continue
			}
			inherit = max(inherit, unixNano(old.NextAttempt))
			if err := t.removePending(id, k); err != nil {
				return 0, err
			}
			c.pending--
			c.coalesced++
			removed = true
		}
		if removed {
			if err := t.reschedule(k); err != nil {
				return 0, err
			}
		}
	}
	return inherit, nil
}

// putAliases stores the names resolveKey mapped (commit goroutine),
// writing only those the file does not already hold.
func (t *txb) putAliases(e Entry) error {
	if len(e.aliasWrites) == 0 {
		return nil
	}
	b := t.tx.Bucket(bucketAlias)
	for _, n := range e.aliasWrites {
		if string(b.Get([]byte(n))) == e.Key {
			continue
		}
		if err := b.Put([]byte(n), []byte(e.Key)); err != nil {
			return fmt.Errorf("store alias: %w", err)
		}
	}
	return nil
}

// afterCommitCards drops the in-memory alias map when an enqueue of the
// commit was not stored (its names may be in the map but not the file);
// the next enqueue reloads it from the file.
func (q *Queue) afterCommitCards(res commitResult) {
	if q.cards == nil {
		return
	}
	for i, r := range res.job.ops {
		if _, ok := r.(*enqueueReq); !ok {
			continue
		}
		er, _ := res.results[i].(enqueueRes)
		if res.err != nil || res.failed[i] != nil || er.err != nil {
			q.cards = nil
			return
		}
	}
}

// canonical returns the key that name maps to, or name.
func (t *txb) canonical(name string) string {
	if v := t.tx.Bucket(bucketAlias).Get([]byte(name)); v != nil {
		return string(v)
	}
	return name
}

// noteDelivered remembers the newest delivered coalescing item of its key.
func (t *txb) noteDelivered(it Item, now time.Time) error {
	if !it.Coalesce {
		return nil
	}
	key := []byte(t.canonical(it.Key))
	b := t.tx.Bucket(bucketDone)
	if v := b.Get(key); len(v) == 16 && binary.BigEndian.Uint64(v) > it.ID {
		return nil
	}
	v := binary.BigEndian.AppendUint64(idKey(it.ID), uint64(unixNano(now)))
	return b.Put(key, v)
}

// prepareRetry checks that retrying the dead item it does not send an
// older state of its record after a newer one was delivered (unless
// force), and moves it to its record's canonical key.
func (t *txb) prepareRetry(it *Item, force bool) error {
	canon := t.canonical(it.Key)
	if it.Coalesce && !force {
		if v := t.tx.Bucket(bucketDone).Get([]byte(canon)); len(v) == 16 {
			if newer := binary.BigEndian.Uint64(v); newer > it.ID {
				at := time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
				return fmt.Errorf("%w: item %d of %s was delivered at %s; retrying would leave the older state last (force to send it anyway)",
					ErrSuperseded, newer, canon, at.UTC().Format(time.RFC3339))
			}
		}
	}
	it.Key = canon
	return nil
}

// ForceRetry is Retry without the ErrSuperseded check: the dead item is
// sent even though a newer update of its record was delivered.
func (q *Queue) ForceRetry(id uint64) error { return q.admin(opRetryForce, id) }
