package outbox

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// runState is one Run call as the loop sees it.
type runState struct {
	ctx     context.Context // Run's context: once done, nothing new is sent
	sendCtx context.Context // outlives ctx by StopGrace for in-flight sends
	sender  Sender
	work    chan Item // closed by the loop
	wg      *sync.WaitGroup
}

const probeTimeout = 30 * time.Second

// Run is the sender loop: it sends due items through s, up to
// Options.Concurrency keys at once, FIFO within a key, and applies the
// verdicts. It returns nil when ctx is done, after in-flight sends have
// finished or StopGrace has passed (their context is then cancelled);
// ErrClosed when the queue is closed; ErrRunning if another Run is active.
func (q *Queue) Run(ctx context.Context, s Sender) error {
	q.runMu.Lock()
	if q.running {
		q.runMu.Unlock()
		return ErrRunning
	}
	q.running = true
	q.runMu.Unlock()
	defer func() {
		q.runMu.Lock()
		q.running = false
		q.runMu.Unlock()
	}()

	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	rs := &runState{ctx: ctx, sendCtx: sendCtx, sender: s, work: make(chan Item, q.opts.Concurrency), wg: &wg}
	for range q.opts.Concurrency {
		wg.Add(1)
		go q.worker(rs)
	}
	start := &runStartReq{rs: rs, reply: make(chan error, 1)}
	var err error
	select {
	case q.reqs <- start:
		select {
		case err = <-start.reply:
		case <-q.done:
			err = ErrClosed
		}
	case <-q.quit:
		err = ErrClosed
	}
	if err != nil {
		close(rs.work)
		wg.Wait()
		return err
	}
	select {
	case <-ctx.Done():
	case <-q.quit:
	}
	stop := &runStopReq{reply: make(chan struct{})}
	select {
	case q.reqs <- stop:
		select {
		case <-stop.reply:
		case <-q.done:
		}
	case <-q.done: // the loop closed work on its way out
	}
	grace := time.AfterFunc(q.opts.StopGrace, cancel)
	defer grace.Stop()
	wg.Wait()
	if ctx.Err() == nil && q.closed() {
		return ErrClosed
	}
	return nil
}

func (q *Queue) worker(rs *runState) {
	defer rs.wg.Done()
	for it := range rs.work {
		if rs.ctx.Err() != nil || q.closed() {
			q.post(&completeReq{it: it, abandon: true})
			continue
		}
		res := q.send(rs, it)
		if res.Verdict == Reauth {
			res = q.send(rs, it)
			if res.Verdict == Reauth {
				res.Verdict = Retry
				res.Reason = cleanReason(res.Reason, "authentication failed twice")
			}
		}
		q.post(&completeReq{it: it, res: res})
	}
}

func (q *Queue) send(rs *runState, it Item) (res Result) {
	defer func() {
		if r := recover(); r != nil {
			q.log.Error("outbox sender panicked", "id", it.ID, "panic", fmt.Sprint(r))
			res = Result{Verdict: Retry, Reason: "sender panicked"}
		}
	}()
	res = rs.sender.Send(rs.sendCtx, it)
	res.RetryAfter = min(max(res.RetryAfter, 0), q.opts.RetryAfterMax)
	switch res.Verdict {
	case Delivered, Retry, Reauth, Reject:
	default:
		res = Result{Verdict: Retry, Reason: fmt.Sprintf("sender returned unknown verdict %d", int(res.Verdict))}
	}
	return res
}

func (q *Queue) probe(rs *runState) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("probe panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(rs.sendCtx, probeTimeout)
	defer cancel()
	return rs.sender.Probe(ctx)
}

// post hands a request to the loop; dropped once the queue is closed.
func (q *Queue) post(r request) {
	select {
	case q.reqs <- r:
	case <-q.quit:
	}
}

// Kick hints that the network may be back or that there is new work: an
// offline queue probes now, an online one looks for due items now.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}
