package outbox

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/tposagent/tposagent/internal/clock"
)

// The loop goroutine is the only writer of the file. It batches every
// request that is waiting (enqueues, send results, admin operations) into
// one bbolt transaction: one fsync for the lot (group commit). After each
// batch it hands due heads to the sender's workers.

type request interface{ isRequest() }

type enqueueReq struct {
	e     Entry
	reply chan enqueueRes
	state atomic.Int32 // reqWaiting, reqTaken, reqWithdrawn (faults.go)
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
	opRetryForce // Retry without the ErrSuperseded check (cards.go)
)

func (op adminOp) String() string {
	switch op {
	case opRetry, opRetryForce:
		return "retry"
	case opDrop:
		return "drop"
	}
	return fmt.Sprintf("admin op %d", int(op))
}

type adminReq struct {
	op    adminOp
	id    uint64
	reply chan error
}

type adminRes struct {
	err     error
	sendNow bool // Retry found the item pending
}

// unreadableReq moves an undecodable pending record to the dead letters.
type unreadableReq struct {
	id  uint64
	key string
	err error
}

type runStartReq struct {
	rs    *runState
	reply chan error
}

type runStopReq struct {
	reply chan struct{}
}

func (*enqueueReq) isRequest()    {}
func (*completeReq) isRequest()   {}
func (*probeReq) isRequest()      {}
func (*adminReq) isRequest()      {}
func (*unreadableReq) isRequest() {}
func (*runStartReq) isRequest()   {}
func (*runStopReq) isRequest()    {}

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
	kicked      bool // Kick while a probe ran: probe again soon (jittered) if it fails
	asked       bool // a person's Retry while a probe ran: probe again at once if it fails
	kickProbe   bool // nextProbe was drawn for a Kick: another Kick does not draw again
	probeFails  int
	nextProbe   time.Time
	lastProbeOK time.Time
	holdUntil   time.Time // reconnect jitter
	// probeAt: an online queue's next probe nobody asked for (the one at
	// start, after a failed send, a re-probe), a random part of the jitter
	// away; zero when none is due (online.go).
	probeAt time.Time
	// starting: Run has started and its first probe has not answered;
	// nothing is sent before it does (a server down at start gets no
	// sends, as when that probe ran at once).
	starting    bool
	pausedUntil time.Time // Retry-After; nothing but its end or a person's Retry ends it (online.go)
	nextDue     time.Time // earliest future due head seen by the last scan
	drained     bool      // pending went to zero: consider compaction
	failures    int       // consecutive transient failures, for the recovery log line
	sending     int       // items handed to workers whose result has not come back

	pendingOps []request      // waiting for the next commit
	committing bool           // a commit runs in its own goroutine
	locked     map[string]int // keys a running commit may change (coalescing)
	barrier    int            // admin operations in the running commit: no dispatch

	gone      string // the file was deleted or replaced: what to tell callers
	reopenErr string // the file is not open (at start, or again after compaction): why
	reopenWhy string // after what it was closed, for the messages of the retries
	// openAtStart: the file has never been opened (Options.KeepTrying);
	// the next successful open is a full one (check, quarantine, counters).
	openAtStart bool
	remap       bool      // bbolt lost the file's mapping: close and reopen it (remap.go)
	lastRemap   time.Time // real time of the last reopen for a lost mapping
	remaps      int       // reopens for a lost mapping

	sf storeFaults // results not recorded, faults on the file (faults.go)

	dispatchFails int         // consecutive dispatches that could not read the file
	nextReopen    time.Time   // real time of the next attempt
	reopenWake    *time.Timer // wakes the loop for that attempt (real time)

	lastSuccess, lastErrorAt time.Time
	lastError                string
	compactions              int

	timer   clock.Timer
	timerAt time.Time
}

func (ls *loopState) init(q *Queue) {
	ls.c = q.pub.counters()
	ls.busy = map[string]uint64{}
	ls.busyIDs = map[uint64]string{}
	ls.locked = map[string]int{}
	ls.online = true
}

func (q *Queue) loop() {
	defer close(q.done)
	// A read of the mapped file that faults (EIO, the file cut short) is
	// a panic recovered where the file is read, not the agent's end.
	debug.SetPanicOnFault(true)
	ls := &q.ls
	batch := make([]request, 0, 64)
	identity := time.NewTicker(identityCheckEvery)
	defer identity.Stop()
	if ls.reopenErr == "" {
		q.loadPause(q.clock.Now()) // a server's pause from before a restart (online.go)
	}
	for {
		q.tick()
		var timerC, reopenC <-chan time.Time
		if ls.timer != nil {
			timerC = ls.timer.C()
		}
		if ls.reopenWake != nil {
			reopenC = ls.reopenWake.C
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
			if res.job != ls.sf.job {
				// A commit abandoned after a fault ended after all.
				q.log.Warn("outbox: a commit abandoned after a fault ended late; its result is ignored", "err", res.err)
				break
			}
			q.finishCommit(res)
			// The callers just answered send their next requests at once:
			// let them run and take what has arrived into this commit
			// (bigger group commits, fewer fsyncs and less CPU per item).
			runtime.Gosched()
			batch = batch[:0]
		more:
			for len(batch) < maxBatch {
				select {
				case r := <-q.reqs:
					batch = append(batch, r)
				default:
					break more
				}
			}
			if len(batch) > 0 {
				q.accept(batch)
				clear(batch)
			}
			if len(ls.pendingOps) > 0 {
				q.startCommit()
			}
		case <-timerC:
			ls.timer, ls.timerAt = nil, time.Time{}
		case <-reopenC:
			ls.reopenWake = nil // tick tries the reopen
		case <-identity.C:
			if what := q.fileGone(); what != "" && !ls.committing {
				q.onFileGone(what)
			}
		case <-q.faultHint:
			q.onFaultHint()
		case <-q.goneHint:
			// Stats saw it from another goroutine: look again from here.
			if what := q.fileGone(); what != "" && !ls.committing {
				q.onFileGone(what)
			}
		case <-q.kick:
			q.onKick(q.clock.Now()) // online.go
		case <-q.quit:
			if ls.timer != nil {
				ls.timer.Stop()
			}
			if ls.reopenWake != nil {
				ls.reopenWake.Stop()
			}
			if ls.committing {
				// A frozen disk must not hold the stop: the commit gets
				// CloseTimeout, then it is abandoned (faults.go).
				wait := time.NewTimer(q.opts.CloseTimeout)
				select {
				case res := <-q.commitDone:
					if res.job == ls.sf.job {
						q.finishCommit(res)
					} else {
						q.abandonCommit() // the one that ended was abandoned after a fault
					}
				case <-wait.C:
					q.abandonCommit()
				}
				wait.Stop()
			}
			q.dropUnrecorded()
			if ls.run != nil {
				close(ls.run.work)
				ls.run = nil
				ls.probeAt, ls.starting = time.Time{}, false
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
			ls.online, ls.probing, ls.reprobe, ls.kicked, ls.asked, ls.probeFails = true, false, false, false, false, 0
			// A start is a reconnect too: a fleet that boots together
			// after a power cut must not send its backlog at once.
			ls.nextProbe = time.Time{}
			ls.holdUntil = now.Add(time.Duration(q.rnd() * float64(q.opts.ReconnectJitter)))
			// Learn whether we are online, at the end of the same hold:
			// the start's probe is one nobody asked for either.
			ls.probeAt, ls.starting = ls.holdUntil, true
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
		case *enqueueReq:
			if ls.reopenErr != "" {
				r.reply <- enqueueRes{err: fmt.Errorf("enqueue: %w: %s", ErrClosed, ls.reopenErr)}
				continue
			}
			if ls.gone != "" {
				r.reply <- enqueueRes{err: fmt.Errorf("enqueue: %w: %s", ErrFileGone, ls.gone)}
				continue
			}
			ls.pendingOps = append(ls.pendingOps, r)
		default:
			ls.pendingOps = append(ls.pendingOps, r)
		}
	}
}
