package outbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The loop goroutine is the only writer of the file. It batches every
// request that is waiting (enqueues, send results, admin operations) into
// one bbolt transaction: one fsync for the lot (group commit). After each
// batch it hands due heads to the sender's workers.

type request interface{ isRequest() }

type enqueueReq struct {
	e     Entry
	reply chan enqueueRes
}

type enqueueRes struct {
	it  Item
	err error
}

type completeReq struct {
	it      Item
	res     Result
	abandon bool    // not sent (stopping): release the key, change nothing
	jitter  float64 // drawn by the loop for the backoff
}

type probeReq struct {
	err error
	rs  *runState
}

type adminOp int

const (
	opRetry adminOp = iota
	opDrop
)

type adminReq struct {
	op    adminOp
	id    uint64
	reply chan error
}

type runStartReq struct {
	rs    *runState
	reply chan error
}

type runStopReq struct {
	reply chan struct{}
}

func (*enqueueReq) isRequest()  {}
func (*completeReq) isRequest() {}
func (*probeReq) isRequest()    {}
func (*adminReq) isRequest()    {}
func (*runStartReq) isRequest() {}
func (*runStopReq) isRequest()  {}

const maxBatch = 4096

type counters struct {
	pending, dead                                int
	enqueued, delivered, coalesced, deadLettered uint64
}

type loopState struct {
	c       counters
	run     *runState
	busy    map[string]uint64 // key -> id being sent (or waiting for its result to commit)
	busyIDs map[uint64]string

	online      bool // dispatch allowed: not known to be offline
	reachable   bool // last contact reached the server (Stats.Online)
	probing     bool
	reprobe     bool // a send failed while a probe ran: probe again if it succeeds
	kicked      bool // Kick while a probe ran: probe again if it fails
	probeFails  int
	nextProbe   time.Time
	lastProbeOK time.Time
	holdUntil   time.Time // reconnect jitter
	pausedUntil time.Time // Retry-After
	nextDue     time.Time // earliest future due head seen by the last scan
	drained     bool      // pending went to zero: consider compaction
	failures    int       // consecutive transient failures, for the recovery log line
	sending     int       // items handed to workers whose result has not come back

	pendingOps []request      // waiting for the next commit
	committing bool           // a commit runs in its own goroutine
	locked     map[string]int // keys a running commit may change (coalescing)
	barrier    int            // admin operations in the running commit: no dispatch

	lastSuccess, lastErrorAt time.Time
	lastError                string
	compactions              int

	timer   Timer
	timerAt time.Time
}

func (ls *loopState) init(q *Queue) {
	ls.c = counters{pending: q.pub.pending, dead: q.pub.dead, enqueued: q.pub.enqueued,
		delivered: q.pub.delivered, coalesced: q.pub.coalesced, deadLettered: q.pub.deadLettered}
	ls.busy = map[string]uint64{}
	ls.busyIDs = map[uint64]string{}
	ls.locked = map[string]int{}
	ls.online = true
}

func (q *Queue) loop() {
	defer close(q.done)
	ls := &q.ls
	batch := make([]request, 0, 64)
	for {
		q.tick()
		var timerC <-chan time.Time
		if ls.timer != nil {
			timerC = ls.timer.C()
		}
		select {
		case r := <-q.reqs:
			batch = append(batch[:0], r)
		collect:
			for len(batch) < maxBatch {
				select {
				case r := <-q.reqs:
					batch = append(batch, r)
				default:
					break collect
				}
			}
			q.accept(batch)
			clear(batch)
			if !ls.committing && len(ls.pendingOps) > 0 {
				q.startCommit()
			}
		case res := <-q.commitDone:
			q.finishCommit(res)
			if len(ls.pendingOps) > 0 {
				q.startCommit()
			}
		case <-timerC:
			ls.timer, ls.timerAt = nil, time.Time{}
		case <-q.kick:
			if ls.probing {
				ls.kicked = true // the running probe may predate the hint
			} else if !ls.online {
				ls.nextProbe = time.Time{}
			}
		case <-q.quit:
			if ls.timer != nil {
				ls.timer.Stop()
			}
			if ls.committing {
				q.finishCommit(<-q.commitDone)
			}
			if ls.run != nil {
				close(ls.run.work)
				ls.run = nil
			}
			for _, r := range ls.pendingOps {
				q.failRequest(r)
			}
			ls.pendingOps = nil
			q.failPending()
			return
		}
	}
}

func (q *Queue) failRequest(r request) {
	switch r := r.(type) {
	case *enqueueReq:
		r.reply <- enqueueRes{err: fmt.Errorf("enqueue: %w", ErrClosed)}
	case *adminReq:
		r.reply <- ErrClosed
	case *runStartReq:
		r.reply <- ErrClosed
	case *runStopReq:
		close(r.reply)
	}
}

// failPending answers the requests still queued after Close.
func (q *Queue) failPending() {
	for {
		select {
		case r := <-q.reqs:
			q.failRequest(r)
		default:
			return
		}
	}
}

// isLogical tells per-request errors that leave the transaction usable.
func isLogical(err error) bool {
	return errors.Is(err, ErrFull) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInFlight)
}

// accept handles control requests at once and queues the rest for the
// next commit.
func (q *Queue) accept(batch []request) {
	ls := &q.ls
	now := q.clock.Now()
	for _, r := range batch {
		switch r := r.(type) {
		case *runStartReq:
			if ls.run != nil {
				r.reply <- ErrRunning
				continue
			}
			ls.run = r.rs
			ls.online, ls.probing, ls.reprobe, ls.kicked, ls.probeFails = true, false, false, false, 0
			// A start is a reconnect too: a fleet that boots together
			// after a power cut must not send its backlog at once.
			ls.nextProbe = time.Time{}
			ls.holdUntil = now.Add(time.Duration(q.rnd() * float64(q.opts.ReconnectJitter)))
			q.startProbe() // learn whether we are online
			r.reply <- nil
		case *runStopReq:
			if ls.run != nil {
				close(ls.run.work)
				ls.run = nil
			}
			close(r.reply)
		case *probeReq:
			q.handleProbe(r, now)
		case *completeReq:
			ls.sending--
			if r.abandon {
				q.release(r.it)
				continue
			}
			q.noteResult(r, now) // what the server said counts at once (a pause stops dispatch now)
			ls.pendingOps = append(ls.pendingOps, r)
		default:
			ls.pendingOps = append(ls.pendingOps, r)
		}
	}
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

// backoffCap is min(RetryMax, RetryBase * 2^(n-1)).
func (q *Queue) backoffCap(n int) time.Duration {
	d := q.opts.RetryBase
	for i := 1; i < n && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, q.opts.RetryMax)
}

// backoff is full jitter: uniform in [0, cap).
func (q *Queue) backoff(n int) time.Duration {
	return time.Duration(q.rnd() * float64(q.backoffCap(n)))
}

// noteResult updates the in-memory view of the server after a send.
func (q *Queue) noteResult(r *completeReq, now time.Time) {
	ls := &q.ls
	res := r.res
	switch res.Verdict {
	case Delivered, Reject, Reauth:
		if ls.failures > 0 {
			q.log.Info("outbox sending recovered", "after_failures", ls.failures)
		}
		ls.failures = 0
		ls.reachable, ls.online = true, true
		if res.Verdict == Delivered {
			ls.lastSuccess = now
		} else {
			ls.lastError, ls.lastErrorAt = cleanReason(res.Reason, "rejected by server"), now
			q.log.Warn("outbox item dead-lettered", "id", r.it.ID, "kind", r.it.Kind, "key", r.it.Key, "reason", ls.lastError)
		}
	default:
		ls.failures++
		ls.lastError, ls.lastErrorAt = cleanReason(res.Reason, "transient failure"), now
		if ls.failures == 1 || ls.failures%100 == 0 {
			q.log.Warn("outbox send failed, will retry", "id", r.it.ID, "key", r.it.Key, "failures", ls.failures, "err", ls.lastError)
		}
		if res.RetryAfter > 0 {
			ls.reachable = true
			if until := now.Add(res.RetryAfter); until.After(ls.pausedUntil) {
				ls.pausedUntil = until
				q.log.Warn("outbox paused by server Retry-After", "until", until)
			}
			return
		}
		if ls.run != nil && ls.online {
			if ls.probing {
				ls.reprobe = true // this failure is newer than the running probe
			} else {
				q.startProbe()
			}
		}
	}
}

func (q *Queue) startProbe() {
	ls := &q.ls
	rs := ls.run
	if rs == nil || ls.probing {
		return
	}
	ls.probing = true
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		q.post(&probeReq{err: q.probe(rs), rs: rs})
	}()
}

func (q *Queue) handleProbe(r *probeReq, now time.Time) {
	ls := &q.ls
	if r.rs != ls.run {
		return
	}
	ls.probing = false
	if r.err == nil {
		ls.kicked = false
		ls.reachable = true
		ls.lastProbeOK = now
		if !ls.online {
			ls.online = true
			jitter := time.Duration(q.rnd() * float64(q.opts.ReconnectJitter))
			ls.holdUntil = now.Add(jitter)
			if err := q.resetBackoff(now); err != nil {
				q.log.Error("outbox reset backoff", "err", err)
			}
			q.log.Info("outbox back online", "failed_probes", ls.probeFails, "first_send_in", jitter)
		}
		ls.probeFails = 0
		if ls.reprobe {
			ls.reprobe = false
			q.startProbe()
		}
		return
	}
	ls.reprobe = false
	ls.reachable = false
	ls.lastError, ls.lastErrorAt = cleanReason("probe: "+r.err.Error(), "probe failed"), now
	if ls.online {
		q.log.Warn("outbox offline, probing on a backoff", "err", ls.lastError)
	}
	ls.online = false
	ls.probeFails++
	d := q.backoffCap(ls.probeFails)
	ls.nextProbe = now.Add(d/2 + time.Duration(q.rnd()*float64(d/2)))
	if ls.kicked {
		ls.kicked = false
		ls.nextProbe = now
	}
}

// resetBackoff makes every head due now: after a reconnect the queue drains
// at once instead of waiting for the backoffs earned while offline.
func (q *Queue) resetBackoff(now time.Time) error {
	return q.db.Update(func(tx *bolt.Tx) error {
		t, err := openTxb(tx)
		if err != nil {
			return err
		}
		type head struct {
			id  uint64
			key string
		}
		var heads []head
		c := t.sched.Cursor()
		for k, v := c.Seek(schedKey(now.UnixNano()+1, 0)); k != nil; k, v = c.Next() {
			if len(k) == 16 {
				heads = append(heads, head{binary.BigEndian.Uint64(k[8:]), string(v)})
			}
		}
		for _, h := range heads {
			it, ok, err := t.getItem(h.id)
			if err != nil || !ok {
				continue
			}
			it.NextAttempt = time.Time{}
			if err := t.items.Put(idKey(h.id), encodeRecord(&it)); err != nil {
				return err
			}
			if err := t.reschedule(h.key); err != nil {
				return err
			}
		}
		return nil
	})
}

func (q *Queue) canDispatch(now time.Time) bool {
	ls := &q.ls
	return ls.run != nil && ls.online && ls.barrier == 0 && !now.Before(ls.pausedUntil) && !now.Before(ls.holdUntil) &&
		ls.sending < q.opts.Concurrency
}

// tick dispatches due work, starts probes, compacts, publishes the state
// and arms the timer for the next thing that will become due.
func (q *Queue) tick() {
	ls := &q.ls
	now := q.clock.Now()
	if ls.run != nil && !ls.online && !ls.probing && !now.Before(ls.nextProbe) {
		q.startProbe()
	}
	if q.canDispatch(now) {
		q.dispatch(now)
	}
	if ls.drained && !ls.committing && len(ls.busy) == 0 && ls.c.pending == 0 {
		ls.drained = false
		q.maybeCompact()
	}
	q.publish()

	var wake time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	if ls.run != nil {
		if !ls.online {
			if !ls.probing {
				consider(ls.nextProbe)
			}
		} else {
			if now.Before(ls.pausedUntil) {
				consider(ls.pausedUntil)
			}
			if now.Before(ls.holdUntil) {
				consider(ls.holdUntil)
			}
			if !now.Before(ls.pausedUntil) && !now.Before(ls.holdUntil) {
				consider(ls.nextDue)
			}
		}
	}
	if wake.Equal(ls.timerAt) && ls.timer != nil {
		return
	}
	if ls.timer != nil {
		ls.timer.Stop()
		ls.timer, ls.timerAt = nil, time.Time{}
	}
	if !wake.IsZero() {
		ls.timer, ls.timerAt = q.clock.NewTimer(wake.Sub(now)), wake
	}
}

// dispatch hands due heads of idle keys to the workers.
func (q *Queue) dispatch(now time.Time) {
	ls := &q.ls
	ls.nextDue = time.Time{}
	var picked []Item
	free := q.opts.Concurrency - ls.sending
	err := q.db.View(func(tx *bolt.Tx) error {
		t, err := openTxb(tx)
		if err != nil {
			return err
		}
		c := t.sched.Cursor()
		for k, v := c.First(); k != nil && free > 0; k, v = c.Next() {
			if len(k) != 16 {
				continue
			}
			due := int64(binary.BigEndian.Uint64(k))
			if due > now.UnixNano() {
				ls.nextDue = time.Unix(0, due)
				break
			}
			if _, busy := ls.busy[string(v)]; busy || ls.locked[string(v)] > 0 {
				continue
			}
			id := binary.BigEndian.Uint64(k[8:])
			it, ok, err := t.getItem(id)
			if err != nil || !ok {
				q.log.Error("outbox head unreadable, skipping", "id", id, "err", err)
				continue
			}
			picked = append(picked, it)
			ls.busy[it.Key] = id
			ls.busyIDs[id] = it.Key
			ls.sending++
			free--
		}
		return nil
	})
	if err != nil {
		q.log.Error("outbox dispatch", "err", err)
	}
	for _, it := range picked {
		ls.run.work <- it // never blocks: cap(work) == Concurrency >= sending
	}
}

func (q *Queue) publish() {
	ls := &q.ls
	q.mu.Lock()
	defer q.mu.Unlock()
	p := &q.pub
	p.pending, p.dead = ls.c.pending, ls.c.dead
	p.enqueued, p.delivered, p.coalesced, p.deadLettered = ls.c.enqueued, ls.c.delivered, ls.c.coalesced, ls.c.deadLettered
	p.inFlight = len(ls.busy)
	p.online = ls.reachable
	p.offline = !ls.online
	p.pausedUntil, p.lastSuccess, p.lastErrorAt, p.lastError = ls.pausedUntil, ls.lastSuccess, ls.lastErrorAt, ls.lastError
	p.compactions = ls.compactions
	if len(p.inFlightIDs) != len(ls.busyIDs) || len(ls.busyIDs) > 0 {
		p.inFlightIDs = make(map[uint64]bool, len(ls.busyIDs))
		for id := range ls.busyIDs {
			p.inFlightIDs[id] = true
		}
	}
}

// maybeCompact rewrites a drained file that is much bigger than its content.
func (q *Queue) maybeCompact() {
	if q.opts.CompactMinSize < 0 {
		return
	}
	fi, err := os.Stat(q.path)
	if err != nil || fi.Size() < q.opts.CompactMinSize {
		return
	}
	var used int64
	_ = q.db.View(func(tx *bolt.Tx) error { used = usedBytes(q.db, tx); return nil })
	if used*4 > fi.Size() {
		return
	}
	if err := q.compact(); err != nil {
		q.log.Error("outbox compaction failed", "err", err)
		return
	}
	q.ls.compactions++
	after := int64(0)
	if fi2, err := os.Stat(q.path); err == nil {
		after = fi2.Size()
	}
	q.log.Info("outbox compacted", "before_bytes", fi.Size(), "after_bytes", after)
}
