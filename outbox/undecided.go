package outbox

// Items waiting for a lookup that cannot decide. A sender that must look
// an item up before it sends it again (a special code create whose
// earlier outcome is unknown) may find that the server cannot answer the
// question — it ignores the lookup's filter and has more rows than a
// lookup reads. It returns Retry with Result.Undecided: the item backs
// off like any retry, and it is never held silently: the bucket
// "undecided" indexes such items, the meta bucket counts them, Stats
// tells how many and why, and ForceRetry on one sends it without looking
// (Item.SkipLookup).

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketUndecided = []byte("undecided") // id(8) -> nil
	metaUndecided   = []byte("undecided")
)

// setUndecided records whether pending item id waits for a lookup that
// cannot decide. Safe to call whatever the current state.
func (t *txb) setUndecided(id uint64, on bool) error {
	b := t.tx.Bucket(bucketUndecided)
	if b == nil {
		if !on {
			return nil
		}
		var err error
		if b, err = t.tx.CreateBucketIfNotExists(bucketUndecided); err != nil {
			return err
		}
	}
	k := idKey(id)
	was := b.Get(k) != nil
	if was == on {
		return nil
	}
	n := getCounter(t.meta, metaUndecided)
	if on {
		if err := b.Put(k, nil); err != nil {
			return err
		}
		n++
	} else {
		if err := b.Delete(k); err != nil {
			return err
		}
		n = subFloor(n, 1)
	}
	return putCounter(t.meta, metaUndecided, n)
}

// noteOutcome keeps the card table and the undecided index in step with a
// send's result (before the verdict is applied): what the sender learned
// about the record is linked, and the item waits for a lookup only while
// its last attempt said so.
// forced: an operator asked to send it without a lookup while this
// attempt ran (with one): a retry is due at once.
//
// superseded: the item is to be dropped instead of retried, as a
// coalescing update that a newer one of its record replaced (cards.go).
func (q *Queue) noteOutcome(t *txb, it *Item, sent Item, res Result, now time.Time) (forced, superseded bool, err error) {
	if t.settled == nil {
		t.settled = map[uint64]bool{}
	}
	t.settled[it.ID] = true
	if err := q.applyLink(t, *it, res, now); err != nil {
		return false, false, err
	}
	if res.Verdict != Delivered && res.Verdict != Reject && t.supersededAcrossLink(*it) {
		return false, true, t.setUndecided(it.ID, false)
	}
	undecided := res.Verdict != Delivered && res.Verdict != Reject && res.Undecided && !it.SkipLookup
	it.Undecided = undecided
	return it.SkipLookup && !sent.SkipLookup, false, t.setUndecided(it.ID, undecided)
}

// undecidedView reads the count and the oldest one's reason.
func undecidedView(tx *bolt.Tx, items *bolt.Bucket) (int, string) {
	m := tx.Bucket(bucketMeta)
	b := tx.Bucket(bucketUndecided)
	if m == nil || b == nil {
		return 0, ""
	}
	n := int(getCounter(m, metaUndecided))
	if n == 0 {
		return 0, ""
	}
	reason := "a lookup before sending again cannot decide"
	if k, _ := b.Cursor().First(); len(k) == 8 {
		if v := items.Get(k); v != nil {
			if it, err := decodeRecord(idFromKey(k), v); err == nil && it.LastError != "" {
				reason = it.LastError
			}
		}
	}
	return n, reason
}

// skipLookup marks pending item id to be sent without a lookup (an
// operator's ForceRetry); it no longer waits for one.
func (t *txb) skipLookup(id uint64) error {
	it, ok, err := t.getItem(id)
	if err != nil || !ok {
		return err
	}
	if !it.SkipLookup {
		it.SkipLookup = true
		if err := t.items.Put(idKey(id), encodeRecord(&it)); err != nil {
			return err
		}
	}
	return t.setUndecided(id, false)
}
