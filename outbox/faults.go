package outbox

// Storage faults while the queue runs.
//
// Results that cannot be recorded: when the commit that would record a
// send's outcome fails (EIO, a read-only remount after a disk error, a
// full disk, a fault on a mapped page), the item is NOT handed out again:
// its key stays busy, the result is kept in memory and committed again on
// a capped backoff, no new send starts while a whole commit fails (more
// sends would only make more outcomes that cannot be recorded), and
// Stats.Unrecorded / Stats.LastError say "delivery results cannot be
// recorded: …". If the process ends first the result is lost, and the
// record is sent again after the restart as one whose outcome is unknown
// (the agent's Sender looks up every special code enqueued before it
// started). So a failing commit never repeats a create by itself.
//
// Faults on the mapped file: bbolt reads the file through a memory
// mapping, and a read of a page the disk cannot deliver (EIO) or that is
// no longer in the file (truncated) is a SIGBUS that would kill the
// process. The goroutines that read the mapping while the queue runs (the
// loop, the commit, the API's reads) turn it into a panic
// (debug.SetPanicOnFault) that is recovered as an error: reported,
// retried, never a crash. After a fault or a panic inside bbolt while
// running, the file is closed and opened again the full way, as at start
// (the read-only check; a damaged file is moved aside, a sound one kept),
// once no commit runs.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// unrecordedPrefix starts the status of results that cannot be recorded.
const unrecordedPrefix = "delivery results cannot be recorded: "

// The backoff of a commit of results that failed: doubling from
// recordRetryBase up to recordRetryMax.
const (
	recordRetryBase = 200 * time.Millisecond
	recordRetryMax  = 5 * time.Second
)

// storeFaults is the loop's view of storage faults (owned by the loop).
type storeFaults struct {
	unrecorded []request // send results whose commit failed: their keys stay busy
	fails      int       // consecutive failed commits of results
	why        string    // the last failure, for Stats
	retryAt    time.Time // clock time of the next attempt
	hold       bool      // a whole commit failed: no new send until results commit again
	reopen     string    // a fault or panic reading the file, or a failed commit: open it again the full way
	lastReopen time.Time // real time of the last such reopen
	since      time.Time // when results first could not be recorded (this run of failures)
	// reopenNow: the reopen is for a commit the disk refused: it comes
	// before the next commit, not at most once a second.
	reopenNow bool
	// reopenFails counts the failed reopens in a row after a refused
	// commit (reopenDelay).
	reopenFails int

	faulted     bool             // a fault or panic was seen: bbolt may be stuck (Close is bounded)
	held        map[request]bool // results that failed to commit and are not recorded yet
	job         *commitJob       // the commit running now
	commitStart time.Time        // real time it started
}

// slowCommit: a commit running longer than this (real time) stops new
// sends until it ends: a frozen or failing disk would leave their
// results unrecorded.
const slowCommit = 2 * time.Second

// commitHangs reports whether the running commit is slow (loop).
func (q *Queue) commitHangs() bool {
	return q.ls.committing && time.Since(q.ls.sf.commitStart) > slowCommit
}

// The states of an enqueue request: waiting for a commit, taken into one
// (it may be stored), or withdrawn by its caller's timeout (it will not).
const (
	reqWaiting int32 = iota
	reqTaken
	reqWithdrawn
)

// take marks r as part of a commit; false when its caller withdrew it.
func (r *enqueueReq) take() bool {
	return r.state.CompareAndSwap(reqWaiting, reqTaken) || r.state.Load() == reqTaken
}

// errWithdrawn answers (to nobody) an enqueue withdrawn by its timeout.
var errWithdrawn = errors.New("enqueue withdrawn: its caller stopped waiting before it was committed")

// ErrCommitTimeout: Enqueue's commit did not finish within
// Options.EnqueueTimeout (a frozen or failing disk). The record is not
// acknowledged; errors.Is(err, ErrMaybeStored) tells that it was already
// being written and may yet be stored (and then delivered); otherwise
// nothing was stored.
var ErrCommitTimeout = errors.New("the disk did not confirm the record in time")

// ErrMaybeStored: see ErrCommitTimeout.
var ErrMaybeStored = errors.New("it was being written when the wait ended, so it may still be stored (retry with the same Idempotency-Key)")

// enqueueTimedOut answers an Enqueue whose commit did not come in time.
func (q *Queue) enqueueTimedOut(r *enqueueReq) (Item, error) {
	if r.state.CompareAndSwap(reqWaiting, reqWithdrawn) {
		return Item{}, fmt.Errorf("enqueue: %w (waited %v; is the disk frozen or failing?): nothing was stored", ErrCommitTimeout, q.opts.EnqueueTimeout)
	}
	select {
	case res := <-r.reply: // it came just now
		return res.it, res.err
	default:
	}
	return Item{}, fmt.Errorf("enqueue: %w (waited %v; is the disk frozen or failing?); the record is not acknowledged: %w", ErrCommitTimeout, q.opts.EnqueueTimeout, ErrMaybeStored)
}

// ErrCommitAbandoned: Close gave up waiting for a commit that did not
// finish (a frozen disk). The requests in it were answered with it; the
// file stays open until the process ends (bbolt cannot close it while the
// commit runs). Nothing acknowledged is lost: an acknowledged record was
// committed before its answer.
var ErrCommitAbandoned = errors.New("outbox commit abandoned: the disk did not finish it in time")

// abandonCommit answers the requests of the commit that does not finish
// (loop, at Close).
func (q *Queue) abandonCommit() {
	job := q.ls.sf.job
	if job == nil {
		return
	}
	q.hung.Store(true)
	q.log.Error("OUTBOX COMMIT ABANDONED at stop: the disk did not finish it; its requests are answered with an error", "requests", len(job.ops), "running_for", time.Since(q.ls.sf.commitStart).Round(time.Millisecond))
	q.finishCommit(commitResult{job: job, c: job.c, results: make([]any, len(job.ops)), failed: make([]error, len(job.ops)),
		err: fmt.Errorf("commit outbox batch: %w", ErrCommitAbandoned)})
}

// keepUnrecorded takes the results of a commit that failed (whole: the
// transaction itself failed) and schedules their next commit.
func (q *Queue) keepUnrecorded(rs []request, err error, whole bool) {
	ls := &q.ls
	sf := &ls.sf
	now := q.clock.Now()
	sf.unrecorded = append(sf.unrecorded, rs...)
	sf.fails++
	if sf.since.IsZero() {
		sf.since = now
	}
	if whole {
		sf.hold = true
	}
	d := recordRetryBase
	for i := 1; i < sf.fails && d < recordRetryMax; i++ {
		d *= 2
	}
	d = min(d, recordRetryMax)
	sf.retryAt = now.Add(d)
	sf.why = oneLine(err)
	ls.lastError, ls.lastErrorAt = unrecordedPrefix+sf.why, now
	if sf.fails == 1 || sf.fails%10 == 0 {
		q.log.Error("OUTBOX CANNOT RECORD DELIVERY RESULTS: their records are held (not sent again) and the commit is tried again",
			"results", len(sf.unrecorded), "failures", sf.fails, "next_try_in", d, "err", sf.why)
	}
}

// recordedAll notes a commit that recorded results: the failures, if
// any, are over.
func (q *Queue) recordedAll() {
	ls := &q.ls
	sf := &ls.sf
	if sf.fails == 0 && !sf.hold {
		return
	}
	if len(sf.unrecorded) > 0 || len(sf.held) > 0 {
		return
	}
	q.log.Warn("outbox delivery results recorded again", "after_failures", sf.fails, "since", sf.since)
	if strings.HasPrefix(ls.lastError, unrecordedPrefix) {
		ls.lastError = "" // LastErrorAt stays: when it last failed
	}
	sf.fails, sf.why, sf.hold, sf.since, sf.retryAt = 0, "", false, time.Time{}, time.Time{}
}

// retryUnrecorded puts the results whose commit failed back in front of
// the next commit once their backoff has passed.
func (q *Queue) retryUnrecorded(now time.Time) {
	sf := &q.ls.sf
	if len(sf.unrecorded) == 0 {
		return
	}
	if sf.retryAt.After(now.Add(recordRetryMax)) {
		sf.retryAt = now // the clock went back
	}
	if now.Before(sf.retryAt) {
		return
	}
	q.ls.pendingOps = append(sf.unrecorded, q.ls.pendingOps...)
	sf.unrecorded = nil
}

// unrecordedWake is when the loop must wake up for retryUnrecorded.
func (q *Queue) unrecordedWake() time.Time {
	if len(q.ls.sf.unrecorded) == 0 {
		return time.Time{}
	}
	return q.ls.sf.retryAt
}

// finishResults releases the keys of the results a commit recorded and
// keeps those it could not record.
func (q *Queue) finishResults(res commitResult) {
	var keep []request
	var why error
	had := false
	for i, r := range res.job.ops {
		var it Item
		switch r := r.(type) {
		case *completeReq:
			it = r.it
		case *unreadableReq:
			it = Item{ID: r.id, Key: r.key}
		default:
			continue
		}
		had = true
		err := res.err
		if err == nil {
			err = res.failed[i]
		}
		if err != nil {
			keep, why = append(keep, r), err
			if q.ls.sf.held == nil {
				q.ls.sf.held = map[request]bool{}
			}
			q.ls.sf.held[r] = true
			continue
		}
		delete(q.ls.sf.held, r)
		q.release(it)
	}
	switch {
	case len(keep) > 0:
		q.keepUnrecorded(keep, why, res.err != nil)
	case had:
		q.recordedAll()
	}
}

// dropUnrecorded is Close: results still not recorded are lost; their
// records count as unknown outcomes at the next start.
func (q *Queue) dropUnrecorded() {
	sf := &q.ls.sf
	n := len(sf.unrecorded)
	for _, r := range q.ls.pendingOps {
		switch r.(type) {
		case *completeReq, *unreadableReq:
			n++
		}
	}
	if n > 0 {
		q.log.Error("outbox closed with delivery results not recorded: those records are sent again after the next start, special codes looked up first",
			"results", n, "err", sf.why)
	}
	sf.unrecorded, sf.held = nil, nil
}

// publishFaults copies what Stats shows of the faults (mu held).
func (q *Queue) publishFaults(p *published) {
	sf := &q.ls.sf
	p.unrecorded, p.unrecordedWhy = 0, ""
	if sf.fails > 0 {
		p.unrecorded = len(sf.held)
		p.unrecordedWhy = unrecordedPrefix + sf.why
		p.lastError = p.unrecordedWhy // the most important thing to say while it lasts
	}
}

// errFault marks an error made from a fault on a mapped page: an I/O
// error (or a file cut short under the mapping), not damage in itself.
var errFault = errors.New("fault reading the outbox file's memory mapping (I/O error or file cut short)")

// isFaultPanic reports whether a recovered panic is a memory fault that
// debug.SetPanicOnFault turned into a panic.
func isFaultPanic(r any) bool {
	e, ok := r.(runtime.Error)
	if !ok {
		return false
	}
	_, ok = e.(interface{ Addr() uintptr })
	return ok
}

// panicError is the error of a panic recovered around bbolt: errFault for
// a fault on the mapping, errBoltPanic for anything else.
func panicError(r any) error {
	if isFaultPanic(r) {
		return fmt.Errorf("%w: %v", errFault, r)
	}
	return fmt.Errorf("%w: %v", errBoltPanic, r)
}

// errBoltPanic: bbolt panicked on what it read (a damaged page).
var errBoltPanic = errors.New("bbolt panicked")

// guard runs fn, a read or write of the file, on a goroutine whose
// faults on the mapping are panics, and returns a panic as an error.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	return fn()
}

// errPoisoned: the DB a panic was recovered from is not entered again.
var errPoisoned = fmt.Errorf("%w: bbolt may still hold its locks after an earlier fault in this file, which is being opened again", errFault)

// guard is guard for a call into the queue's current DB. A panic that
// guard recovers inside bbolt (a fault on the mapping, a damaged page)
// can leave bbolt's own locks held: beginTx reads the meta page with its
// meta lock taken and no deferred unlock, so a file cut short under it
// left every later transaction on that DB waiting for ever (the loop,
// Stats, the janitor; once in about 40 runs of TestFileFaultsWhileRunning).
// So the DB is marked: no call enters it again (each fails at once with
// errPoisoned), the loop is told, a commit stuck inside it is abandoned
// (abandonStuckCommit) and the file is opened again the full way.
func (q *Queue) guard(fn func() error) error {
	db := q.db
	if db != nil && q.poisoned.Load() == db {
		q.hintFault()
		return errPoisoned
	}
	err := guard(fn)
	if db != nil && (errors.Is(err, errFault) || errors.Is(err, errBoltPanic)) {
		q.poisoned.Store(db)
		q.hintFault()
	}
	return err
}

// hintFault wakes the loop after a DB was poisoned (any goroutine).
func (q *Queue) hintFault() {
	select {
	case q.faultHint <- struct{}{}:
	default:
	}
}

// onFaultHint is the loop's side of hintFault: the file is opened again
// once no commit runs; a commit that runs now gets a second to end
// before it is abandoned.
func (q *Queue) onFaultHint() {
	if q.poisoned.Load() != q.db {
		return // opened again already
	}
	q.noteFileFault(errPoisoned)
	if q.ls.committing {
		q.retryOpenIn(time.Second)
	}
}

// abandonStuckCommit answers the requests of a commit that has run for a
// second inside a poisoned DB: it may wait for ever on a lock the fault
// left held. Its goroutine is left behind; should it ever end, its
// result is ignored (loop) and it cannot write: the file handle it
// writes through is closed by closeAfterFault.
func (q *Queue) abandonStuckCommit() {
	ls := &q.ls
	job := ls.sf.job
	if !ls.committing || job == nil || q.poisoned.Load() != q.db || time.Since(ls.sf.commitStart) < time.Second {
		return
	}
	q.log.Error("OUTBOX COMMIT ABANDONED after a fault: bbolt holds a lock the fault left; its requests are answered with an error and the file is opened again",
		"requests", len(job.ops), "running_for", time.Since(ls.sf.commitStart).Round(time.Millisecond))
	q.finishCommit(commitResult{job: job, c: job.c, results: make([]any, len(job.ops)), failed: make([]error, len(job.ops)),
		err: fmt.Errorf("commit outbox batch: %w", errPoisoned)})
}

// noteFileFault: a read or commit met a fault or a panic; the loop opens
// the file again the full way (reopenAfterFault) once no commit runs.
func (q *Queue) noteFileFault(err error) {
	if !errors.Is(err, errFault) && !errors.Is(err, errBoltPanic) {
		return
	}
	ls := &q.ls
	if ls.sf.reopen == "" {
		q.log.Error("OUTBOX FILE FAULT while running: it is checked and opened again (a damaged file is moved aside)", "path", q.path, "err", err)
	}
	ls.sf.reopen = oneLine(err)
	ls.sf.faulted = true
}

const (
	reopenAfterFaultWhy  = "after a fault"
	reopenAfterCommitWhy = "after a failed commit"
)

// noteFailedCommit: the disk refused a commit after bbolt had applied it
// in memory (a write or an fsync failed: EIO, a full disk, a read-only
// remount). What bbolt keeps in memory (its meta page, its free list) and
// the queue's counters may no longer match the file: after a failed
// fsync the file can hold all of the commit, part of it or none, and the
// kernel may have dropped pages it could not write. Carrying on from
// memory drifted the counters (a pending count that never reached zero)
// and made bbolt panic on its own free list ("page 2 already freed").
// So the file is closed and opened again the full way before the next
// commit, as after a fault: the check (a damaged file is moved aside),
// the counters read back from what the file holds. While the disk still
// refuses the open, the queue is closed and says why; it tries again
// once a second for ten tries, then every five seconds.
func (q *Queue) noteFailedCommit(err error) {
	sf := &q.ls.sf
	if sf.reopen == "" {
		q.log.Error("OUTBOX COMMIT REFUSED BY THE DISK: the file is checked and opened again before the next commit", "path", q.path, "err", err)
	}
	sf.reopen, sf.reopenNow = oneLine(err), true
}

// reopenDelay is the wait before the next try to open the file after a
// refused commit: a second for ten tries, then five (a full check each
// second of a large file on a failing disk would take the POS's CPU).
func (q *Queue) reopenDelay() time.Duration {
	sf := &q.ls.sf
	sf.reopenFails++
	if sf.reopenFails <= 10 {
		return time.Second
	}
	return 5 * time.Second
}

// retryOpenLater arms the next try to open the file: in a second, or
// after reopenDelay when the file was closed for a refused commit.
func (q *Queue) retryOpenLater() {
	d := time.Second
	if q.ls.reopenWhy == reopenAfterCommitWhy {
		d = q.reopenDelay()
	}
	q.retryOpenIn(d)
}

// retryOpenIn arms the loop's real-time wake for the next try to open
// the file: the queue may get no request meanwhile.
func (q *Queue) retryOpenIn(d time.Duration) {
	ls := &q.ls
	ls.nextReopen = time.Now().Add(d)
	if ls.reopenWake != nil {
		ls.reopenWake.Stop()
	}
	ls.reopenWake = time.NewTimer(d)
}

// reopenAfterFault closes the file and opens it again the full way
// (check, quarantine of a damaged file, counters), at most once a second.
// Called from the loop when no commit runs.
func (q *Queue) reopenAfterFault() {
	ls := &q.ls
	if ls.sf.reopen == "" || ls.committing || ls.reopenErr != "" {
		return
	}
	if !ls.sf.reopenNow && time.Since(ls.sf.lastReopen) < time.Second {
		return
	}
	ls.sf.lastReopen = time.Now()
	why, afterCommit := ls.sf.reopen, ls.sf.reopenNow
	ls.sf.reopen, ls.sf.reopenNow = "", false
	// A reader stuck in bbolt since the fault holds dbMu: try for a
	// second, then again later.
	locked := false
	for deadline := time.Now().Add(time.Second); !locked && time.Now().Before(deadline); {
		if locked = q.dbMu.TryLock(); !locked {
			time.Sleep(5 * time.Millisecond)
		}
	}
	kind, closed := reopenAfterFaultWhy, "reading the outbox file failed: "
	if afterCommit {
		kind, closed = reopenAfterCommitWhy, "a commit to the outbox file failed: "
	}
	if !locked {
		ls.sf.reopen, ls.sf.reopenNow = why, afterCommit
		q.log.Error("outbox: cannot reopen the file "+kind+": a reader is stuck in it; trying again", "path", q.path)
		q.retryOpenIn(time.Second)
		return
	}
	defer q.dbMu.Unlock()
	q.closeAfterFault()
	ls.reopenErr, ls.reopenWhy, ls.openAtStart = closed+why, kind, true
	if err := q.openLate(); err != nil {
		q.retryOpenLater()
		return
	}
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// closeAfterFault closes the file after a fault. A fault inside bbolt can
// leave one of its locks held, so that Close would wait for ever: after
// a second the DB is left as it is and the file handle bbolt opened is
// closed here instead (which releases the file's lock, so that it can be
// opened again; the old mapping stays until the process ends).
func (q *Queue) closeAfterFault() {
	db, f := q.db, q.dbFile.Load()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- panicError(r)
			}
		}()
		debug.SetPanicOnFault(true)
		done <- db.Close()
	}()
	select {
	case err := <-done:
		if err != nil {
			q.log.Warn("outbox: close the file after a fault", "err", err)
		}
	case <-time.After(time.Second):
		q.log.Error("outbox: the file cannot be closed after a fault (bbolt is stuck); its handle is closed and it is left mapped", "path", q.path)
		if f != nil {
			_ = syscallUnlock(f) // the lock goes with the handle, even if a stuck call still holds it
			_ = f.Close()
		}
	}
	q.dbFile.Store(nil)
}

// fileShort reports, as a fault, a file that is now shorter than the
// pages bbolt uses (cut short while the agent runs): touching those pages
// through the mapping would fault, and a fault inside bbolt can leave its
// locks held. Checked before the loop or a reader uses the file.
func (q *Queue) fileShort() error {
	want, f := q.boltSize.Load(), q.dbFile.Load()
	if want <= 0 || f == nil {
		return nil
	}
	fi, err := f.Stat() // the open file, not whatever is at the path now (fileGone's)
	if err != nil || fi.Size() >= want {
		return nil
	}
	return fmt.Errorf("%w: the file has %d bytes but its pages reach %d (cut short while the agent ran)", errFault, fi.Size(), want)
}

// capture makes bbolt's open of o report the handle it opens in f.
func capture(o *bolt.Options, f **os.File) *bolt.Options {
	o.OpenFile = func(name string, flag int, mode os.FileMode) (*os.File, error) {
		ff, err := os.OpenFile(name, flag, mode)
		*f = ff
		return ff, err
	}
	return o
}
