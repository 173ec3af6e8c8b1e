package outbox

// The commit pipeline: a batch of requests becomes one bbolt transaction
// (group commit) that runs beside the loop, and its results are answered.

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// isLogical tells per-request errors that leave the transaction usable.
func isLogical(err error) bool {
	return errors.Is(err, ErrFull) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInFlight)
}

// commitJob is one group commit. Everything the transaction needs from
// the loop's state is copied in, so it can run in its own goroutine while
// the loop keeps dispatching: keys it may change are busy (send results)
// or locked (coalescing enqueues), and admin operations stop dispatch.
type commitJob struct {
	ops     []request
	now     time.Time
	c       counters
	flying  map[string]uint64 // in-flight id of each coalescing key
	busyIDs map[uint64]bool   // for Drop
	locked  []string
	barrier bool
}

type commitResult struct {
	job     *commitJob
	c       counters
	results []any
	err     error
}

func (q *Queue) startCommit() {
	ls := &q.ls
	n := min(len(ls.pendingOps), q.maxBatch)
	job := &commitJob{ops: append([]request(nil), ls.pendingOps[:n]...), now: q.clock.Now(), c: ls.c, flying: map[string]uint64{}}
	ls.pendingOps = append(ls.pendingOps[:0], ls.pendingOps[n:]...)
	for _, r := range job.ops {
		switch r := r.(type) {
		case *enqueueReq:
			if r.e.Coalesce {
				if id, ok := ls.busy[r.e.Key]; ok {
					job.flying[r.e.Key] = id
				}
				ls.locked[r.e.Key]++
				job.locked = append(job.locked, r.e.Key)
			}
		case *completeReq:
			r.jitter = q.rnd()
		case *adminReq:
			if !job.barrier {
				job.barrier = true
				ls.barrier++
				job.busyIDs = make(map[uint64]bool, len(ls.busyIDs))
				for id := range ls.busyIDs {
					job.busyIDs[id] = true
				}
			}
		}
	}
	ls.committing = true
	go func() { q.commitDone <- q.runCommit(job) }()
}

func (q *Queue) runCommit(job *commitJob) commitResult {
	res := commitResult{job: job, c: job.c, results: make([]any, len(job.ops))}
	c := &res.c
	res.err = q.db.Update(func(tx *bolt.Tx) error {
		t, err := openTxb(tx)
		if err != nil {
			return err
		}
		used := usedBytes(q.db, tx)
		for i, r := range job.ops {
			var err error
			switch r := r.(type) {
			case *enqueueReq:
				var it Item
				it, err = q.applyEnqueue(t, job, r.e, c, &used)
				res.results[i] = enqueueRes{it: it, err: err}
			case *completeReq:
				err = q.applyComplete(t, r, job.now, c)
			case *adminReq:
				err = q.applyAdmin(t, job, r, c)
				res.results[i] = err
			}
			if err != nil && !isLogical(err) {
				return err
			}
		}
		m := t.meta
		for _, kv := range []struct {
			k []byte
			v uint64
		}{{metaPending, uint64(max(c.pending, 0))}, {metaDead, uint64(max(c.dead, 0))}, {metaEnqueued, c.enqueued},
			{metaDelivered, c.delivered}, {metaCoalesced, c.coalesced}, {metaDeadLettered, c.deadLettered}} {
			if err := putCounter(m, kv.k, kv.v); err != nil {
				return err
			}
		}
		return nil
	})
	if res.err != nil {
		res.err = fmt.Errorf("commit outbox batch: %w", res.err)
		q.log.Error("outbox commit failed", "err", res.err, "requests", len(job.ops))
	}
	return res
}

func (q *Queue) finishCommit(res commitResult) {
	ls := &q.ls
	job := res.job
	ls.committing = false
	for _, k := range job.locked {
		if ls.locked[k]--; ls.locked[k] <= 0 {
			delete(ls.locked, k)
		}
	}
	if job.barrier {
		ls.barrier--
	}
	wasPending := ls.c.pending
	if res.err == nil {
		ls.c = res.c
	}
	if wasPending > 0 && ls.c.pending == 0 {
		ls.drained = true
	}
	for _, r := range job.ops {
		if r, ok := r.(*completeReq); ok {
			q.release(r.it)
		}
	}
	q.publish() // before the replies: a caller's next Stats sees its change
	for i, r := range job.ops {
		switch r := r.(type) {
		case *enqueueReq:
			if res.err != nil {
				r.reply <- enqueueRes{err: res.err}
			} else {
				r.reply <- res.results[i].(enqueueRes)
			}
		case *adminReq:
			if res.err != nil {
				r.reply <- res.err
			} else {
				e, _ := res.results[i].(error)
				r.reply <- e
			}
		}
	}
}

func (q *Queue) release(it Item) {
	if id, ok := q.ls.busy[it.Key]; ok && id == it.ID {
		delete(q.ls.busy, it.Key)
	}
	delete(q.ls.busyIDs, it.ID)
}

func (q *Queue) applyEnqueue(t *txb, job *commitJob, e Entry, c *counters, used *int64) (Item, error) {
	now := job.now
	est := int64(len(e.Payload) + 3*len(e.Key) + 160)
	if *used+est > q.opts.MaxSize {
		return Item{}, fmt.Errorf("enqueue %s %s: %w (max %d bytes)", e.Kind, e.Key, ErrFull, q.opts.MaxSize)
	}
	var inherit int64
	removed := false
	if e.Coalesce {
		flying, isFlying := job.flying[e.Key]
		for _, id := range t.keyIDs(e.Key) {
			if isFlying && id == flying {
				continue
			}
			old, ok, err := t.getItem(id)
			if err != nil || !ok || !old.Coalesce || old.Kind != e.Kind {
				continue
			}
			inherit = max(inherit, unixNano(old.NextAttempt))
			if err := t.removePending(id, e.Key); err != nil {
				return Item{}, err
			}
			c.pending--
			c.coalesced++
			removed = true
		}
	}
	first := removed || !t.hasPending(e.Key)
	id, err := t.items.NextSequence()
	if err != nil {
		return Item{}, err
	}
	it := Item{ID: id, Kind: e.Kind, Key: e.Key, Payload: bytes.Clone(e.Payload), IdempotencyKey: newIdempotencyKey(),
		Created: now, NextAttempt: fromUnixNano(inherit), Coalesce: e.Coalesce}
	if err := t.putPending(&it); err != nil {
		return Item{}, err
	}
	c.pending++
	c.enqueued++
	*used += est
	if first {
		if err := t.reschedule(e.Key); err != nil {
			return Item{}, err
		}
	}
	return it, nil
}

func cleanReason(s string, fallback string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "?")
	if s == "" {
		s = fallback
	}
	if len(s) > 1000 {
		s = strings.ToValidUTF8(s[:1000], "") + "…"
	}
	return s
}

func (q *Queue) applyComplete(t *txb, r *completeReq, now time.Time, c *counters) error {
	id, key := r.it.ID, r.it.Key
	it, ok, err := t.getItem(id)
	if err != nil {
		// A record we cannot read can never be sent: keep it visible in dead.
		q.log.Error("outbox record unreadable, moving it to dead letters", "id", id, "err", err)
		raw := bytes.Clone(t.items.Get(idKey(id)))
		if err := t.removePending(id, key); err != nil {
			return err
		}
		if err := t.dead.Put(idKey(id), raw); err != nil {
			return err
		}
		c.pending--
		c.dead++
		c.deadLettered++
		return t.reschedule(key)
	}
	if !ok {
		return nil
	}
	switch r.res.Verdict {
	case Delivered:
		if err := t.removePending(id, key); err != nil {
			return err
		}
		c.pending--
		c.delivered++
	case Reject:
		if err := t.removePending(id, key); err != nil {
			return err
		}
		it.Attempts++
		it.DeadReason = cleanReason(r.res.Reason, "rejected by server")
		it.LastError = it.DeadReason
		it.DeadAt = now
		if err := t.dead.Put(idKey(id), encodeRecord(&it)); err != nil {
			return err
		}
		c.pending--
		c.dead++
		c.deadLettered++
	default: // Retry, or anything unknown
		it.Attempts++
		it.LastError = cleanReason(r.res.Reason, "transient failure")
		delay := time.Duration(r.jitter * float64(q.backoffCap(it.Attempts)))
		if r.res.RetryAfter > delay {
			delay = r.res.RetryAfter
		}
		it.NextAttempt = now.Add(delay)
		if err := t.items.Put(idKey(id), encodeRecord(&it)); err != nil {
			return err
		}
	}
	return t.reschedule(key)
}

func (q *Queue) applyAdmin(t *txb, job *commitJob, r *adminReq, c *counters) error {
	k := idKey(r.id)
	switch r.op {
	case opRetry:
		v := t.dead.Get(k)
		if v == nil {
			return fmt.Errorf("retry outbox item %d: %w", r.id, ErrNotFound)
		}
		it, err := decodeRecord(r.id, v)
		if err != nil {
			return err
		}
		if err := t.dead.Delete(k); err != nil {
			return err
		}
		it.Attempts, it.NextAttempt, it.LastError, it.DeadReason, it.DeadAt = 0, time.Time{}, "", "", time.Time{}
		if err := t.putPending(&it); err != nil {
			return err
		}
		c.dead--
		c.pending++
		return t.reschedule(it.Key)
	case opDrop:
		if job.busyIDs[r.id] {
			return fmt.Errorf("drop outbox item %d: %w", r.id, ErrInFlight)
		}
		if v := t.items.Get(k); v != nil {
			it, err := decodeRecord(r.id, v)
			if err != nil {
				return err
			}
			if err := t.removePending(r.id, it.Key); err != nil {
				return err
			}
			c.pending--
			return t.reschedule(it.Key)
		}
		if t.dead.Get(k) != nil {
			if err := t.dead.Delete(k); err != nil {
				return err
			}
			c.dead--
			return nil
		}
		return fmt.Errorf("drop outbox item %d: %w", r.id, ErrNotFound)
	}
	return fmt.Errorf("outbox admin op %d: unknown", r.op)
}
