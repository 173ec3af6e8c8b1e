package outbox

// Dispatch and timers: the backoff, which due heads go to the workers
// now, and when the loop must wake up next.

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"
)

// backoffCap is min(RetryMax, RetryBase * 2^(n-1)).
func (q *Queue) backoffCap(n int) time.Duration {
	d := q.opts.RetryBase
	for i := 1; i < n && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, q.opts.RetryMax)
}

func (q *Queue) canDispatch(now time.Time) bool {
	ls := &q.ls
	return ls.run != nil && ls.online && !ls.starting && ls.barrier == 0 && !now.Before(ls.pausedUntil) && !now.Before(ls.holdUntil) &&
		ls.sending < q.opts.Concurrency && !ls.sf.hold && !q.commitHangs()
}

// tick dispatches due work, starts probes, compacts, publishes the state
// and arms the timer for the next thing that will become due.
func (q *Queue) tick() {
	ls := &q.ls
	now := q.clock.Now()
	q.forgetFarFuture(now)
	q.remapIfNeeded()
	q.abandonStuckCommit() // faults.go
	q.reopenAfterFault()
	q.retryUnrecorded(now)
	if ls.reopenErr != "" {
		if time.Now().Before(ls.nextReopen) {
			return
		}
		if !q.ensureOpen() {
			// Try again in a second (later after many refused commits,
			// faults.go), woken by a real timer: the queue may get no
			// request meanwhile.
			q.retryOpenLater()
			q.publish()
			return
		}
	}
	if q.probeDue(now) { // online.go
		q.startProbe()
	}
	if q.onlineProbeDue(now) { // online.go
		ls.probeAt = time.Time{}
		q.startProbe()
	}
	if q.canDispatch(now) {
		q.dispatch(now)
		if ls.remap && !ls.committing { // the read found the mapping lost
			q.remapIfNeeded()
			if ls.reopenErr == "" && q.canDispatch(now) {
				q.dispatch(now)
			}
		}
	}
	if !ls.committing && len(ls.pendingOps) > 0 {
		q.startCommit()
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
	consider(q.unrecordedWake())
	if ls.run != nil {
		if !ls.online {
			if !ls.probing {
				consider(q.probeWake(now))
			}
		} else {
			if now.Before(ls.pausedUntil) {
				consider(ls.pausedUntil)
			}
			if !ls.probing {
				consider(ls.probeAt)
			}
			if now.Before(ls.holdUntil) {
				consider(ls.holdUntil)
			}
			if !ls.starting && !now.Before(ls.pausedUntil) && !now.Before(ls.holdUntil) {
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

// horizon is the furthest ahead a due time, a pause or a probe can be
// set; anything further was set before the wall clock went back.
func (q *Queue) horizon() time.Duration {
	return max(q.opts.RetryMax, q.opts.RetryAfterMax, q.opts.ReconnectJitter)
}

// forgetFarFuture drops the loop's waits that the wall clock going back
// (dead CMOS battery, NTP correction) has stretched beyond what they can
// be: a pause, a reconnect hold or a probe time further away than its
// maximum ends now.
func (q *Queue) forgetFarFuture(now time.Time) {
	ls := &q.ls
	if ls.pausedUntil.After(now.Add(q.opts.RetryAfterMax)) {
		q.log.Warn("outbox pause ends now: the clock went back", "paused_until", ls.pausedUntil, "now", now)
		ls.pausedUntil = time.Time{}
	}
	if ls.holdUntil.After(now.Add(q.opts.ReconnectJitter)) {
		ls.holdUntil = time.Time{}
	}
	if ls.nextProbe.After(now.Add(q.probeHorizon())) {
		ls.nextProbe = now
	}
	if ls.probeAt.After(now.Add(q.opts.ReconnectJitter)) {
		ls.probeAt = now
	}
}

// dispatch hands due heads of idle keys to the workers.
func (q *Queue) dispatch(now time.Time) {
	ls := &q.ls
	ls.nextDue = time.Time{}
	var picked []Item
	free := q.opts.Concurrency - ls.sending
	scan := func(tx *bolt.Tx) error {
		t, err := openTxb(tx)
		if err != nil {
			return err
		}
		// Due heads come first in sched. A due time further away than any
		// backoff or Retry-After can reach was written before the clock
		// went back: it counts as due now, or the key would wait for as
		// long as the clock jumped.
		limit := now.Add(q.horizon()).UnixNano()
		c := t.sched.Cursor()
		k, v := c.First()
		for ; k != nil && free > 0; k, v = c.Next() {
			if len(k) != 16 {
				continue
			}
			due := int64(binary.BigEndian.Uint64(k))
			if due > now.UnixNano() && due <= limit {
				if ls.nextDue.IsZero() {
					ls.nextDue = time.Unix(0, due)
				}
				if k, v = c.Seek(schedKey(limit+1, 0)); k == nil {
					break
				}
				if len(k) != 16 {
					continue
				}
			}
			if _, busy := ls.busy[string(v)]; busy {
				continue
			}
			if ls.locked[string(v)] > 0 {
				// A commit is replacing this head (coalescing): it keeps
				// its turn. Its place among the sends is held for it, so a
				// card that changes all the time is not passed by the
				// heads behind it; the commit ends within milliseconds and
				// the next dispatch hands it out.
				free--
				continue
			}
			// The sched entry names the head by its turn (store.go headOf).
			id, found := t.headOf(string(v), binary.BigEndian.Uint64(k[8:]))
			if !found {
				q.log.Error("outbox schedule names a key without items", "key", string(v))
				continue
			}
			it, ok, err := t.getItem(id)
			if !ok && err == nil {
				q.log.Error("outbox index names a missing item", "id", id, "key", string(v))
				continue
			}
			if err != nil {
				// It can never be sent: the next commit moves it to the
				// dead letters; until then its key is held.
				key := string(v)
				ls.busy[key] = id
				ls.busyIDs[id] = key
				ls.pendingOps = append(ls.pendingOps, &unreadableReq{id: id, key: key, err: err})
				continue
			}
			if it.Coalesce {
				it.LinkedKey = linkedKey(tx, it.Key) // cards.go
			}
			picked = append(picked, it)
			ls.busy[it.Key] = id
			ls.busyIDs[id] = it.Key
			ls.sending++
			free--
		}
		return nil
	}
	// guard: a fault on the mapping is an error, not the agent's end.
	err := q.fileShort()
	if err == nil {
		err = q.guard(func() error { return q.db.View(scan) })
	}
	if err != nil {
		q.noteFileFault(err) // a fault or a panic: open the file again the full way
		// Look again in a second (a timer, not the next event, which may
		// never come); a lost mapping is mended first.
		if ls.dispatchFails++; ls.dispatchFails == 1 || ls.dispatchFails%60 == 0 {
			q.log.Error("outbox dispatch: cannot read the outbox file", "err", err, "failures", ls.dispatchFails)
		}
		ls.lastError, ls.lastErrorAt = "read outbox file: "+err.Error(), now
		ls.nextDue = now.Add(time.Second)
		if mappingLost(err) {
			ls.remap = true
		}
	} else {
		ls.dispatchFails = 0
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
	p.gone = ls.gone
	p.reopenErr = ls.reopenErr
	p.queued, p.committing = len(ls.pendingOps), ls.committing
	q.publishFaults(p)
	if len(p.inFlightIDs) != len(ls.busyIDs) || len(ls.busyIDs) > 0 {
		p.inFlightIDs = make(map[uint64]bool, len(ls.busyIDs))
		for id := range ls.busyIDs {
			p.inFlightIDs[id] = true
		}
	}
}
