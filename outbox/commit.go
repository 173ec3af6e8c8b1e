package outbox

// The commit pipeline: a batch of requests becomes one bbolt transaction
// (group commit) that runs beside the loop, and its results are answered.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/tposagent/tposagent/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// isLogical tells per-request errors that leave the transaction usable.
func isLogical(err error) bool {
	return errors.Is(err, ErrFull) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInFlight) || errors.Is(err, ErrUnreadable) ||
		errors.Is(err, ErrIdempotencyConflict) || errors.Is(err, ErrSuperseded)
}

// commitJob is one group commit. Everything the transaction needs from
// the loop's state is copied in, so it can run in its own goroutine while
// the loop keeps dispatching: keys it may change are busy (send results)
// or locked (coalescing enqueues), and admin operations stop dispatch.
type commitJob struct {
	closed  string // the file is closed (a failed reopen): fail everything with this
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
	failed  []error // requests taken out of the transaction, with why
	err     error   // the transaction itself failed: every request gets it
	gone    string  // the file was deleted or replaced (fileGone)
	lastID  uint64  // the items' sequence after the commit (state.go)
	// refused: the disk refused the commit after bbolt had applied it in
	// memory (a write or an fsync failed): the file is opened again
	// before the next commit (faults.go noteFailedCommit).
	refused bool
}

func (q *Queue) startCommit() {
	ls := &q.ls
	q.remapIfNeeded()
	q.reopenAfterFault() // a fault seen: open the file again the full way first (faults.go)
	n := min(len(ls.pendingOps), q.maxBatch)
	job := &commitJob{ops: append([]request(nil), ls.pendingOps[:n]...), now: q.clock.Now(), c: ls.c, flying: map[string]uint64{}}
	ls.pendingOps = append(ls.pendingOps[:0], ls.pendingOps[n:]...)
	if job.closed = ls.reopenErr; job.closed == "" && ls.sf.reopenNow {
		// The reopen after a refused commit could not run yet (a reader
		// is stuck): nothing is committed from bbolt's memory meanwhile.
		job.closed = "a commit to the outbox file failed and it is not open again yet: " + ls.sf.reopen
	}
	if job.closed == "" {
		q.resolveCards(job.ops) // card keys, before they are locked (cards.go)
	}
	for _, r := range job.ops {
		switch r := r.(type) {
		case *enqueueReq:
			if r.e.Coalesce {
				for _, k := range append([]string{r.e.Key}, r.e.merged...) { // merged: see cards.go
					if id, ok := ls.busy[k]; ok {
						job.flying[k] = id
					}
					ls.locked[k]++
					job.locked = append(job.locked, k)
				}
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
	ls.sf.job, ls.sf.commitStart = job, time.Now()
	go func() { q.commitDone <- q.runCommit(job) }()
}

func (q *Queue) runCommit(job *commitJob) commitResult {
	// A request that fails in a way that spoils the transaction is taken
	// out and the rest is applied again without it, as bbolt's Batch
	// re-runs a failing function alone: one bad request is answered with
	// its own error and never fails the others.
	failed := make([]error, len(job.ops))
	if job.closed != "" {
		return commitResult{job: job, c: job.c, results: make([]any, len(job.ops)), failed: failed,
			err: fmt.Errorf("commit outbox batch: %w: %s", ErrClosed, job.closed)}
	}
	// A rename's directory entry not yet durable: no 202 may rest on it.
	if q.dirDirty.Load() {
		if err := atomicfile.SyncDir(filepath.Dir(q.path)); err != nil {
			for i, r := range job.ops {
				if _, ok := r.(*enqueueReq); ok {
					failed[i] = fmt.Errorf("fsync data dir: %w", err)
				}
			}
		} else {
			q.dirDirty.Store(false)
		}
	}
	// An enqueue whose caller gave up waiting (Options.EnqueueTimeout)
	// before this commit took it is not stored: it was answered 503.
	for i, r := range job.ops {
		if r, ok := r.(*enqueueReq); ok && !r.take() {
			failed[i] = errWithdrawn
		}
	}
	// Nothing is accepted into a file that has lost its name.
	gone := q.fileGone()
	if gone != "" {
		for i, r := range job.ops {
			if _, ok := r.(*enqueueReq); ok {
				failed[i] = ErrFileGone
			}
		}
	}
	// A file cut short under the mapping is not touched (faults.go).
	if err := q.fileShort(); err != nil {
		return commitResult{job: job, c: job.c, results: make([]any, len(job.ops)), failed: failed, gone: gone,
			err: fmt.Errorf("commit outbox batch: %w", err)}
	}
	for {
		res := commitResult{job: job, c: job.c, results: make([]any, len(job.ops)), failed: failed, gone: gone}
		bad := -1
		applied := false // the function ran through: an error after it is bbolt's commit to the disk
		// guard: a fault on the mapping (EIO, the file cut short) is this
		// commit's error, not the agent's end (faults.go).
		err := q.guard(func() error {
			return q.db.Update(func(tx *bolt.Tx) error {
				t, err := openTxb(tx)
				if err != nil {
					return err
				}
				used := usedBytes(q.db, tx)
				hwm := tx.Size()
				for i, r := range job.ops {
					if failed[i] != nil {
						continue
					}
					if err := q.applyOne(t, job, r, &res, i, &used, &hwm); err != nil && !isLogical(err) {
						if errors.Is(err, errFault) {
							return err // the file, not the request
						}
						bad, failed[i] = i, err
						return err
					}
				}
				res.lastID = t.items.Sequence()
				if err := q.putCounters(t, &res.c); err != nil {
					return err
				}
				size := tx.Size() // a lower bound of the size after the commit: enough for fileShort
				tx.OnCommit(func() { q.boltSize.Store(size) })
				applied = true
				return nil
			})
		})
		if err != nil && bad >= 0 {
			q.log.Error("outbox request failed; the rest of its commit is applied without it",
				"request", describe(job.ops[bad]), "err", failed[bad])
			continue
		}
		if err != nil {
			res.err, res.refused = fmt.Errorf("commit outbox batch: %w", err), applied
			q.log.Error("outbox commit failed", "err", res.err, "requests", len(job.ops))
		} else if res.gone == "" {
			// The name went while this commit ran: its enqueues are in
			// the open file (and in the copy saved from it), but no 202
			// may rest on a file without a name.
			res.gone = q.fileGone()
		}
		return res
	}
}

// applyOne applies one request; a panic (bbolt on a damaged page) is the
// request's error, not the agent's end.
func (q *Queue) applyOne(t *txb, job *commitJob, r request, res *commitResult, i int, used, hwm *int64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if isFaultPanic(p) {
				err = panicError(p)
				return
			}
			err = fmt.Errorf("%w: %w", errRequestPanicked, panicError(p))
		}
	}()
	c := &res.c
	switch r := r.(type) {
	case *enqueueReq:
		var it Item
		it, err = q.applyEnqueue(t, job, r.e, c, used, hwm)
		res.results[i] = enqueueRes{it: it, err: err}
	case *completeReq:
		err = q.applyComplete(t, r, job.now, c)
	case *unreadableReq:
		err = q.applyUnreadable(t, r.id, r.key, r.err, job.now, c)
	case *adminReq:
		var sendNow bool
		sendNow, err = q.applyAdmin(t, job, r, c)
		if err != nil {
			err = fmt.Errorf("%s outbox item %d: %w", r.op, r.id, err)
		}
		res.results[i] = adminRes{err: err, sendNow: sendNow}
	case *pruneReq: // janitor.go
		res.results[i], err = q.applyPrune(t, r, job.now, c)
	}
	return err
}

var errRequestPanicked = errors.New("outbox request panicked")

func describe(r request) string {
	switch r := r.(type) {
	case *enqueueReq:
		return fmt.Sprintf("enqueue %s %s", r.e.Kind, r.e.Key)
	case *completeReq:
		return fmt.Sprintf("result of item %d (%s)", r.it.ID, r.res.Verdict)
	case *unreadableReq:
		return fmt.Sprintf("dead-letter unreadable item %d", r.id)
	case *adminReq:
		return fmt.Sprintf("%s item %d", r.op, r.id)
	case *pruneReq:
		return "prune bookkeeping"
	}
	return fmt.Sprintf("%T", r)
}

func (q *Queue) putCounters(t *txb, c *counters) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{{metaPending, uint64(max(c.pending, 0))}, {metaDead, uint64(max(c.dead, 0))}, {metaEnqueued, c.enqueued},
		{metaDelivered, c.delivered}, {metaCoalesced, c.coalesced}, {metaDeadLettered, c.deadLettered}} {
		if err := putCounter(t.meta, kv.k, kv.v); err != nil {
			return err
		}
	}
	return nil
}

func (q *Queue) finishCommit(res commitResult) {
	ls := &q.ls
	job := res.job
	ls.committing = false
	ls.sf.job = nil
	for _, k := range job.locked {
		if ls.locked[k]--; ls.locked[k] <= 0 {
			delete(ls.locked, k)
		}
	}
	if job.barrier {
		ls.barrier--
	}
	if q.requeueAfterLostMapping(res) {
		q.publish()
		return
	}
	wasPending := ls.c.pending
	if res.err == nil {
		ls.c = res.c
		q.noteCommitted(res.lastID)
	}
	q.noteFileFault(res.err)
	if res.refused {
		q.noteFailedCommit(res.err)
	}
	for _, err := range res.failed {
		q.noteFileFault(err)
	}
	if wasPending > 0 && ls.c.pending == 0 {
		ls.drained = true
	}
	// A result whose commit failed keeps its key busy and is committed
	// again later: never released to be sent again blind (faults.go).
	q.finishResults(res)
	for i, r := range job.ops {
		if _, ok := r.(*adminReq); ok && res.err == nil && res.failed[i] == nil {
			if ar, _ := res.results[i].(adminRes); ar.sendNow {
				q.sendNow()
			}
		}
	}
	if res.gone != "" {
		q.onFileGone(res.gone)
	}
	q.publish() // before the replies: a caller's next Stats sees its change
	for i, r := range job.ops {
		err := res.err
		if _, ok := r.(*enqueueReq); ok && res.gone != "" && err == nil {
			r.(*enqueueReq).reply <- enqueueRes{err: fmt.Errorf("enqueue: %w: %s", ErrFileGone, ls.gone)}
			continue
		}
		if err == nil && res.failed[i] != nil {
			err = res.failed[i]
			if _, admin := r.(*adminReq); !admin {
				err = fmt.Errorf("outbox %s: %w", describe(r), err)
			}
		}
		switch r := r.(type) {
		case *enqueueReq:
			if err != nil {
				r.reply <- enqueueRes{err: err}
			} else {
				r.reply <- res.results[i].(enqueueRes)
			}
		case *adminReq:
			if err != nil {
				r.reply <- err
			} else {
				ar, _ := res.results[i].(adminRes)
				r.reply <- ar.err
			}
		case *pruneReq:
			q.finishPrune(r, res.results[i], err)
		}
	}
}

func (q *Queue) release(it Item) {
	if id, ok := q.ls.busy[it.Key]; ok && id == it.ID {
		delete(q.ls.busy, it.Key)
	}
	delete(q.ls.busyIDs, it.ID)
}

// commitSlack is room for the pages any commit copies (the meta bucket,
// branch pages, the freelist).
const commitSlack = 1 << 20

func (q *Queue) applyEnqueue(t *txb, job *commitJob, e Entry, c *counters, used, hwm *int64) (Item, error) {
	now := job.now
	if it, ok, err := t.replay(e); ok || err != nil {
		return it, err
	}
	est := int64(len(e.Payload) + 3*len(e.Key) + 160)
	// Two checks: the live content against MaxSize, and the pages' high
	// water mark (which grows when a commit copies pages before freeing
	// the old ones, or finds no free run long enough) against bbolt's own
	// limit, so that bbolt's ErrMaxSizeReached, which would fail the whole
	// commit, never comes first. Each enqueue may copy a couple of index
	// pages beside its own bytes.
	pages := est + 2*int64(t.tx.DB().Info().PageSize)
	if *used+est > q.opts.MaxSize || boltGrowth(runtime.GOOS, *hwm+pages+commitSlack) > q.boltMax.Load() {
		return Item{}, fmt.Errorf("enqueue %s %s: %w (max %d bytes)", e.Kind, e.Key, ErrFull, q.opts.MaxSize)
	}
	var inherit int64
	var turn uint64 // the place of the items it replaces (their oldest id)
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
			turn = minTurn(turn, old.turnOf())
			if err := t.removePending(id, e.Key); err != nil {
				return Item{}, err
			}
			c.pending--
			c.coalesced++
			removed = true
		}
		inh, trn, err := t.coalesceMerged(job, e, c)
		if err != nil {
			return Item{}, err
		}
		inherit, turn = max(inherit, inh), minTurn(turn, trn)
	}
	first := removed || !t.hasPending(e.Key)
	id, err := t.items.NextSequence()
	if err != nil {
		return Item{}, err
	}
	it := Item{ID: id, Kind: e.Kind, Key: e.Key, Payload: bytes.Clone(e.Payload), IdempotencyKey: e.IdempotencyKey,
		Created: now, NextAttempt: fromUnixNano(inherit), Coalesce: e.Coalesce, turn: turn}
	if it.IdempotencyKey == "" {
		it.IdempotencyKey = newIdempotencyKey()
	}
	if err := t.putPending(&it); err != nil {
		return Item{}, err
	}
	if err := q.putLinks(t, e, now); err != nil { // cards.go
		return Item{}, err
	}
	if err := t.remember(e, it, now); err != nil { // idempotency key
		return Item{}, err
	}
	c.pending++
	c.enqueued++
	*used += est
	*hwm += pages
	if first {
		if err := t.rescheduleWith(e.Key, &it); err != nil {
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
		return q.applyUnreadable(t, id, key, err, now, c)
	}
	if !ok {
		return nil
	}
	forced, superseded, err := q.noteOutcome(t, &it, r.it, r.res, now) // card links, undecided (undecided.go)
	if err != nil {
		return err
	}
	if superseded { // replaced while it was being sent (cards.go)
		if err := t.removePending(id, key); err != nil {
			return err
		}
		c.pending--
		c.coalesced++
		return t.reschedule(key)
	}
	switch r.res.Verdict {
	case Delivered:
		if err := t.removePending(id, key); err != nil {
			return err
		}
		if err := q.noteDelivered(t, it, now); err != nil {
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
		} else if forced {
			delay = 0
		}
		it.NextAttempt = now.Add(delay)
		if err := t.items.Put(idKey(id), encodeRecord(&it)); err != nil {
			return err
		}
	}
	return t.reschedule(key)
}

// applyAdmin runs Retry or Drop; sendNow tells that Retry found the item
// pending and made its key due now.
func (q *Queue) applyAdmin(t *txb, job *commitJob, r *adminReq, c *counters) (sendNow bool, err error) {
	k := idKey(r.id)
	switch r.op {
	case opRetry, opRetryForce:
		if t.items.Get(k) != nil {
			if r.op == opRetryForce {
				if err := t.skipLookup(r.id); err != nil {
					return false, err
				}
			}
			return true, q.makeDueNow(t, r.id)
		}
		v := t.dead.Get(k)
		if v == nil {
			return false, ErrNotFound
		}
		it, err := decodeRecord(r.id, v)
		if err != nil {
			return false, err
		}
		if it.Kind == KindUnreadable {
			return false, ErrUnreadable
		}
		if err := t.prepareRetry(&it, r.op == opRetryForce, job.busyIDs); err != nil {
			return false, err
		}
		if err := t.dead.Delete(k); err != nil {
			return false, err
		}
		it.Attempts, it.NextAttempt, it.LastError, it.DeadReason, it.DeadAt = 0, time.Time{}, "", "", time.Time{}
		if err := t.putPending(&it); err != nil {
			return false, err
		}
		c.dead--
		c.pending++
		return false, t.reschedule(it.Key)
	case opDrop:
		if job.busyIDs[r.id] {
			return false, ErrInFlight
		}
		if t.items.Get(k) != nil {
			key, err := t.keyOf(r.id)
			if err != nil {
				return false, err
			}
			if err := t.removePending(r.id, key); err != nil {
				return false, err
			}
			if err := t.setUndecided(r.id, false); err != nil {
				return false, err
			}
			c.pending--
			return false, t.reschedule(key)
		}
		if t.dead.Get(k) != nil {
			if err := t.dead.Delete(k); err != nil {
				return false, err
			}
			c.dead--
			return false, nil
		}
		return false, ErrNotFound
	}
	return false, errors.New("unknown operation")
}

// makeDueNow makes the key of pending item id due now: its head (the item
// itself or an older one of its key, which must go first) loses its
// backoff.
func (q *Queue) makeDueNow(t *txb, id uint64) error {
	key, err := t.keyOf(id)
	if err != nil {
		return err
	}
	ids := t.keyIDs(key)
	if len(ids) == 0 {
		return nil
	}
	head, ok, err := t.getItem(ids[0])
	if err != nil || !ok {
		return nil // an unreadable head is dead-lettered by the next dispatch
	}
	head.NextAttempt = time.Time{}
	if err := t.items.Put(idKey(head.ID), encodeRecord(&head)); err != nil {
		return err
	}
	return t.reschedule(key)
}

// applyUnreadable moves a pending record that cannot be decoded to the
// dead letters, as a readable record that keeps the stored bytes, so that
// it is visible, can be dropped, and no longer holds its key.
func (q *Queue) applyUnreadable(t *txb, id uint64, key string, cause error, now time.Time, c *counters) error {
	raw := t.items.Get(idKey(id))
	if raw == nil {
		return nil
	}
	q.log.Error("outbox record unreadable, moving it to the dead letters", "id", id, "key", key, "err", cause)
	payload, _ := json.Marshal(map[string]string{"unreadable_record_base64": base64.StdEncoding.EncodeToString(raw)})
	reason := cleanReason("unreadable record: "+cause.Error(), "unreadable record")
	it := Item{ID: id, Kind: KindUnreadable, Key: key, Payload: payload, IdempotencyKey: newIdempotencyKey(),
		Created: now, LastError: reason, DeadReason: reason, DeadAt: now}
	if err := t.removePending(id, key); err != nil {
		return err
	}
	if err := t.setUndecided(id, false); err != nil {
		return err
	}
	if err := t.dead.Put(idKey(id), encodeRecord(&it)); err != nil {
		return err
	}
	c.pending--
	c.dead++
	c.deadLettered++
	return t.reschedule(key)
}
