package outbox

// The online/probe state: what the last sends and probes said about the
// server, the Retry-After pause, and the drain after a reconnect.
//
// Two rules keep a fleet of tills from hitting a server together:
//
//   - No synchronised probes. A probe nobody asked for (a Kick: a
//     registration answered or the network came back; the backoff timer of
//     an offline queue) first waits a random part of ReconnectJitter, so
//     that tills that learn of a reconnect in the same second probe spread
//     over the jitter. When such a probe succeeds the queue drains at once:
//     the jitter was spent before the probe, not a second time after it.
//     The same holds while online: the probe at Run's start (at the end of
//     the start's hold), the probe after a failed send and the re-probe
//     after a success that a newer failure made stale all wait a random
//     part of ReconnectJitter (probeAt); the queue keeps sending meanwhile.
//     A person's "send now" (Retry on a pending item) probes at once.
//   - Retry-After is the server's word. A pause lasts until it has passed
//     (capped at RetryAfterMax) or a person's Retry ends it; no probe runs
//     during it (a Kick, a failed send and the backoff timer wait for its
//     end) and no probe's success ends it. A probe the server answers
//     with a Retry-After (RetryAfterError) pauses the queue the same way.

import (
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
		if res.Undecided {
			// The server answered the lookup; the item backs off, no
			// probe is needed (undecided.go).
			ls.reachable = true
			return
		}
		if res.RetryAfter > 0 { // capped at RetryAfterMax by the worker
			ls.reachable = true
			if until := now.Add(res.RetryAfter); until.After(ls.pausedUntil) {
				ls.pausedUntil = until
				q.savePause(until)
				q.log.Warn("outbox paused by server Retry-After", "until", until)
				if !ls.online && ls.nextProbe.Before(until) {
					// An offline queue probes after the pause, jittered:
					// a fleet told the same Retry-After must not probe
					// in the same second it ends.
					ls.nextProbe = until.Add(q.jitter())
				}
			}
			return
		}
		if ls.run != nil && ls.online {
			if ls.probing {
				ls.reprobe = true // this failure is newer than the running probe
			} else {
				q.scheduleProbe(now)
			}
		}
	}
}

// metaPausedUntil keeps the end of the server's pause (UnixNano) in the
// meta bucket, so that a restarted agent waits it out too;
// 0 or a time passed: no pause.
var metaPausedUntil = []byte("paused_until")

// savePause stores the end of the server's pause (zero: none). A failed
// write is logged: the pause still holds in memory.
func (q *Queue) savePause(until time.Time) {
	var v uint64
	if !until.IsZero() {
		v = uint64(until.UnixNano())
	}
	err := q.guard(func() error {
		return q.db.Update(func(tx *bolt.Tx) error {
			t, err := openTxb(tx)
			if err != nil {
				return err
			}
			return putCounter(t.meta, metaPausedUntil, v)
		})
	})
	if err != nil {
		q.log.Warn("outbox: cannot store the server's pause; a restart would not wait it out", "err", err)
	}
}

// loadPause restores a pause stored before a restart. A pause end further
// away than RetryAfterMax (the wall clock went back meanwhile, or the
// limit was lowered) is cut to RetryAfterMax from now; one that has
// passed is none.
func (q *Queue) loadPause(now time.Time) {
	var v uint64
	err := q.guard(func() error {
		return q.db.View(func(tx *bolt.Tx) error {
			t, err := openTxb(tx)
			if err != nil {
				return err
			}
			v = getCounter(t.meta, metaPausedUntil)
			return nil
		})
	})
	if err != nil || v == 0 {
		return
	}
	until := time.Unix(0, int64(v))
	if !until.After(now) {
		return
	}
	if limit := now.Add(q.opts.RetryAfterMax); until.After(limit) {
		q.log.Warn("outbox: the stored server pause ends further away than retry_after_max; cut to it", "paused_until", until, "now", now)
		until = limit
	}
	q.ls.pausedUntil = until
	q.log.Info("outbox paused by the server before the restart", "until", until)
}

// jitter is a random part of ReconnectJitter.
func (q *Queue) jitter() time.Duration {
	return time.Duration(q.rnd() * float64(q.opts.ReconnectJitter))
}

// scheduleProbe sets an online queue's probe nobody asked for to a random
// part of ReconnectJitter from now: a server that fails every till's send
// in the same second must not get every till's probe in that second. An
// earlier schedule stands (a later failure does not put it off).
func (q *Queue) scheduleProbe(now time.Time) {
	ls := &q.ls
	if ls.run == nil || ls.probing || !ls.probeAt.IsZero() {
		return
	}
	ls.probeAt = now.Add(q.jitter())
	q.log.Debug("outbox probe scheduled", "in", ls.probeAt.Sub(now))
}

// onlineProbeDue: an online queue's scheduled probe is due now.
func (q *Queue) onlineProbeDue(now time.Time) bool {
	ls := &q.ls
	return ls.run != nil && ls.online && !ls.probing && !ls.probeAt.IsZero() && !now.Before(ls.probeAt)
}

// startProbe starts a probe now, unless one runs or the server asked for a
// pause (no probe during it).
func (q *Queue) startProbe() {
	ls := &q.ls
	rs := ls.run
	if rs == nil || ls.probing {
		return
	}
	if q.clock.Now().Before(ls.pausedUntil) {
		q.log.Debug("outbox probe skipped: no probe during the server's pause", "paused_until", ls.pausedUntil)
		ls.starting = false // the pause's end is what sending waits for
		return
	}
	ls.probing, ls.kickProbe = true, false
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
	ls.probing, ls.starting = false, false
	if r.err == nil {
		ls.kicked, ls.asked = false, false
		ls.reachable = true
		ls.lastProbeOK = now
		// A pause is left alone: the server asked for the wait, and a
		// login or a list that answers says nothing about when it wants
		// records again.
		if !ls.online {
			ls.online = true
			// No reconnect hold here: this probe waited its jitter before
			// it ran (or a person asked for it).
			if err := q.resetBackoff(now); err != nil {
				q.log.Error("outbox reset backoff", "err", err)
			}
			q.log.Info("outbox back online", "failed_probes", ls.probeFails)
		}
		ls.probeFails = 0
		if ls.reprobe {
			ls.reprobe = false
			q.scheduleProbe(now)
		}
		return
	}
	ls.reprobe, ls.probeAt = false, time.Time{}
	ls.reachable = false
	ls.lastError, ls.lastErrorAt = cleanReason("probe: "+r.err.Error(), "probe failed"), now
	var ra *RetryAfterError
	if errors.As(r.err, &ra) && ra.After > 0 {
		// The server's word, as for a send: no probe before it has passed
		// (the backoff below may be far shorter).
		if until := now.Add(min(ra.After, q.opts.RetryAfterMax)); until.After(ls.pausedUntil) {
			ls.pausedUntil = until
			q.savePause(until)
			q.log.Warn("outbox paused by server Retry-After (probe)", "until", until)
		}
	}
	if ls.online {
		q.log.Warn("outbox offline, probing on a backoff", "err", ls.lastError)
	}
	ls.online = false
	ls.probeFails++
	d := q.backoffCap(ls.probeFails)
	ls.nextProbe, ls.kickProbe = now.Add(d/2+time.Duration(q.rnd()*float64(d/2))+q.jitter()), false
	switch {
	case ls.asked: // a person asked while this probe ran
		ls.nextProbe = now
	case ls.kicked: // a hint came while this probe ran: it may predate it
		ls.nextProbe, ls.kickProbe = now.Add(q.jitter()), true
	}
	ls.kicked, ls.asked = false, false
	if ls.nextProbe.Before(ls.pausedUntil) {
		ls.nextProbe = ls.pausedUntil.Add(q.jitter())
	}
}

// onKick handles Kick: a hint from inside the agent (a registration was
// answered, the network came back) that the server may be reachable. No
// person asked for it, and every till of a fleet may get it in the same
// second, so an offline queue probes after a random part of
// ReconnectJitter, and a paused one not at all.
func (q *Queue) onKick(now time.Time) {
	ls := &q.ls
	switch {
	case now.Before(ls.pausedUntil):
		q.log.Debug("outbox kick: no probe during the server's pause", "paused_until", ls.pausedUntil)
	case ls.probing:
		ls.kicked = true // the running probe may predate the hint
		q.log.Debug("outbox kick: a probe runs")
	case !ls.online && ls.kickProbe:
		q.log.Debug("outbox kick: a probe is due soon", "in", ls.nextProbe.Sub(now))
	case !ls.online:
		// At a random point of the jitter from now, whatever the backoff
		// said, even when that was sooner: a fleet that hears of the
		// reconnect in one second then spreads evenly over the jitter
		// (taking the sooner of the two crowds its start: 13x lower
		// peak instead of 25x in TestFleetReconnect). A later kick does
		// not draw again, so kicks cannot put the probe off.
		ls.nextProbe, ls.kickProbe = now.Add(q.jitter()), true
		q.log.Debug("outbox kick: probe soon", "in", ls.nextProbe.Sub(now))
	default:
		q.log.Debug("outbox kick: online")
	}
}

// probeDue: an offline queue's probe is due now.
func (q *Queue) probeDue(now time.Time) bool {
	ls := &q.ls
	return ls.run != nil && !ls.online && !ls.probing && !now.Before(ls.nextProbe) && !now.Before(ls.pausedUntil)
}

// probeWake is when an offline queue that does not probe now must wake
// up for its next probe.
func (q *Queue) probeWake(now time.Time) time.Time {
	ls := &q.ls
	if now.Before(ls.pausedUntil) && ls.nextProbe.Before(ls.pausedUntil) {
		return ls.pausedUntil
	}
	return ls.nextProbe
}

// probeHorizon is the furthest ahead nextProbe can be set: a backoff and
// its jitter, or the end of a pause and its jitter.
func (q *Queue) probeHorizon() time.Duration {
	return max(q.opts.RetryMax, q.opts.RetryAfterMax) + q.opts.ReconnectJitter
}

// sendNow is an operator's "send now" (Retry on a pending item): the
// server's pause and the reconnect hold end, and an offline queue probes
// at once (a person asked: no jitter).
func (q *Queue) sendNow() {
	ls := &q.ls
	if !ls.pausedUntil.IsZero() {
		q.log.Info("outbox pause ended by an operator's retry", "paused_until", ls.pausedUntil)
	}
	if !ls.pausedUntil.IsZero() {
		q.savePause(time.Time{})
	}
	ls.pausedUntil, ls.holdUntil = time.Time{}, time.Time{}
	if ls.online && !ls.probeAt.IsZero() {
		ls.probeAt = q.clock.Now() // the next tick probes
	}
	if !ls.online {
		if ls.probing {
			ls.asked = true
		} else {
			ls.nextProbe, ls.kickProbe = time.Time{}, false
		}
	}
}

// resetBackoff makes every head due now: after a reconnect the queue drains
// at once instead of waiting for the backoffs earned while offline.
func (q *Queue) resetBackoff(now time.Time) error {
	reset := func(tx *bolt.Tx) error {
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
			id, found := t.headOf(h.key, h.id) // h.id is the head's turn
			if !found {
				continue
			}
			it, ok, err := t.getItem(id)
			if err != nil || !ok {
				continue
			}
			it.NextAttempt = time.Time{}
			if err := t.items.Put(idKey(id), encodeRecord(&it)); err != nil {
				return err
			}
			if err := t.reschedule(h.key); err != nil {
				return err
			}
		}
		return nil
	}
	return q.guard(func() error { return q.db.Update(reset) }) // faults.go
}
