package outbox

// The online/probe state: what the last sends and probes said about the
// server, the Retry-After pause, and the drain after a reconnect.

import (
	"encoding/binary"
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
		if res.RetryAfter > 0 { // capped at RetryAfterMax by the worker
			ls.reachable = true
			if until := now.Add(res.RetryAfter); until.After(ls.pausedUntil) {
				ls.pausedUntil = until
				ls.events++
				ls.pausedEvent = ls.events
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
	ls.events++
	ls.probeEvent = ls.events
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
		if !ls.pausedUntil.IsZero() && ls.probeEvent > ls.pausedEvent {
			// The server answers again after it asked for the pause.
			q.log.Info("outbox pause ended early: a probe succeeded", "paused_until", ls.pausedUntil)
			ls.pausedUntil = time.Time{}
			if err := q.resetBackoff(now); err != nil { // the items waited out the pause too
				q.log.Error("outbox reset backoff", "err", err)
			}
		}
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

// sendNow is an operator's "send now" (Retry on a pending item): the
// server's pause and the reconnect hold end, and an offline queue probes
// at once.
func (q *Queue) sendNow() {
	ls := &q.ls
	if !ls.pausedUntil.IsZero() {
		q.log.Info("outbox pause ended by an operator's retry", "paused_until", ls.pausedUntil)
	}
	ls.pausedUntil, ls.holdUntil = time.Time{}, time.Time{}
	if !ls.online {
		if ls.probing {
			ls.kicked = true
		} else {
			ls.nextProbe = time.Time{}
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
	}
	return guard(func() error { return q.db.Update(reset) }) // faults.go
}
