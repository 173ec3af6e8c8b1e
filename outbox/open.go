package outbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tposagent/tposagent/internal/atomicfile"
	"github.com/tposagent/tposagent/internal/clock"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Queue is a durable outbox backed by one bbolt file. All methods are safe
// for concurrent use.
type Queue struct {
	opts  Options
	path  string
	log   *slog.Logger
	clock clock.Clock
	rnd   func() float64

	dbMu sync.RWMutex // write-locked only to swap db (compaction, Close)
	db   *bolt.DB
	lock io.Closer // <path>.lock where compaction closes the file (lockfile.go); nil elsewhere

	reqs       chan request
	kick       chan struct{}
	commitDone chan commitResult
	goneHint   chan string // Stats saw the file deleted or replaced
	quit       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	maxBatch   int // requests per transaction; 1 gives the naive baseline
	runMu      sync.Mutex
	running    bool

	mu  sync.Mutex // guards pub
	pub published

	books bookState // the janitor's (janitor.go)
	ls    loopState // owned by the loop goroutine
	cards cardState // conflicts seen, where pruning resumes (cards.go)

	boltMax atomic.Int64            // bbolt's MaxSize for the open file (boltLimit)
	ident   atomic.Pointer[fileKey] // the open file, to notice it deleted or replaced
	// dirDirty: a rename's directory fsync failed; commits retry it
	// before they answer.
	dirDirty atomic.Bool
	// hung: Close abandoned a commit that did not finish; the file is
	// left open (faults.go).
	hung atomic.Bool
	// poisoned is a DB a panic was recovered from (faults.go q.guard):
	// bbolt may hold its locks, so no call enters it again.
	poisoned  atomic.Pointer[bolt.DB]
	faultHint chan struct{} // q.guard poisoned the DB: the loop opens the file again
	state     *stateWriter  // <path>.state (state.go)
	// boltSize is the size bbolt's pages reach (fileShort); dbFile the
	// handle bbolt opened for db (closeAfterFault). faults.go.
	boltSize atomic.Int64
	dbFile   atomic.Pointer[os.File]
}

// published is the part of the loop's state that Stats reads.
type published struct {
	pending, dead, inFlight                      int
	enqueued, delivered, coalesced, deadLettered uint64
	online, offline                              bool
	pausedUntil, lastSuccess, lastErrorAt        time.Time
	lastError                                    string
	quarantined                                  string
	quarantinedAt                                time.Time
	gone                                         string
	reopenErr                                    string
	compactions                                  int
	inFlightIDs                                  map[uint64]bool
	unrecorded                                   int    // faults.go
	unrecordedWhy                                string // faults.go
	emptied                                      string // state.go
	queued                                       int    // requests waiting for a commit (tests)
	committing                                   bool   // a commit is running (tests)
}

// Open opens (or creates) the outbox file. A file bbolt cannot open or
// whose check fails is moved aside as <path>.corrupt-<timestamp> and a new
// one is created (Stats.Quarantined tells). When another process holds the
// file, Open fails after Options.OpenTimeout with an error wrapping
// ErrLocked.
func Open(opts Options) (*Queue, error) {
	if opts.Path == "" {
		return nil, errors.New("open outbox: empty path")
	}
	opts.setDefaults()
	q := &Queue{
		opts: opts, path: opts.Path, log: opts.Logger, clock: opts.Clock, rnd: opts.Rand,
		reqs: make(chan request, 1024), kick: make(chan struct{}, 1), commitDone: make(chan commitResult, 1), goneHint: make(chan string, 1), faultHint: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{}), maxBatch: opts.batchLimit,
	}
	if q.rnd == nil {
		q.rnd = rand.Float64
	}
	lock, err := holdLock(q.path, opts.OpenTimeout)
	if errors.Is(err, ErrLocked) {
		return nil, err
	}
	if err != nil {
		// It only guards the moment compaction has the file closed: go on
		// without it rather than not at all.
		q.log.Warn("outbox: no lock file; a second agent could open the file while compaction has it closed", "err", err)
	}
	q.lock = lock
	opened := false
	defer func() {
		if !opened && lock != nil {
			_ = lock.Close()
		}
	}()
	db, err := q.openChecked()
	// An I/O error (EIO, no memory for the mapping, a sharing violation
	// while an antivirus scans the file) says nothing about the content:
	// it is retried a few times, then reported; never quarantined.
	for i := 0; err != nil && i < len(openRetryDelays) && !errors.Is(err, ErrLocked) && !isCorruption(err); i++ {
		q.log.Warn("outbox open failed, retrying", "err", err, "attempt", i+1)
		time.Sleep(openRetryDelays[i])
		db, err = q.openChecked()
	}
	if err != nil && isCorruption(err) {
		db, err = q.quarantineAndOpen(err)
	}
	if err != nil {
		if !opts.KeepTrying || errors.Is(err, ErrLocked) || isCorruption(err) {
			return nil, err
		}
		// Start closed and keep trying (tick → ensureOpen → reopen).
		q.db = new(bolt.DB) // not open: every transaction fails with ErrDatabaseNotOpen
		q.ls.init(q)
		q.ls.reopenErr, q.ls.reopenWhy, q.ls.openAtStart = fmt.Sprintf("cannot open the outbox file: %v", err), "at start", true
		q.pub.reopenErr = q.ls.reopenErr
		q.log.Error("OUTBOX FILE CANNOT BE OPENED: records are refused until it opens; trying again every second", "path", q.path, "err", err)
		opened = true
		q.startJanitor() // before the loop, which may kick it
		go q.loop()
		return q, nil
	}
	q.db = db
	q.noteIdentity()
	if err := q.loadCounters(); err != nil {
		_ = db.Close()
		return nil, err
	}
	q.ls.init(q)
	q.startState(false)
	opened = true
	q.startJanitor() // before the loop, which may kick it
	go q.loop()
	return q, nil
}

// startState compares the file just opened with what the queue last
// committed (state.go), says so when it holds less, and starts keeping
// the state beside it. running: opened again after a fault.
func (q *Queue) startState(running bool) {
	lastID, err := q.fileLastID()
	if err != nil {
		q.log.Warn("outbox: cannot read the file's last id; it is not compared with what was committed", "err", err)
		return
	}
	// Also after a quarantine: a shorter (truncated) file is moved aside,
	// and the new one holds none of what was accepted.
	{
		if msg := q.checkAgainstState(lastID, running); msg != "" {
			q.mu.Lock()
			q.pub.emptied = msg
			q.mu.Unlock()
			q.ls.lastError, q.ls.lastErrorAt = msg, q.clock.Now()
			q.mu.Lock()
			q.pub.lastError, q.pub.lastErrorAt = q.ls.lastError, q.ls.lastErrorAt
			q.mu.Unlock()
		}
	}
	if q.state == nil {
		q.state = newStateWriter(q)
	}
	q.noteCommitted(lastID)
}

// quarantineAndOpen moves the damaged file aside (cause says why) and
// opens a new one in its place.
func (q *Queue) quarantineAndOpen(cause error) (*bolt.DB, error) {
	qpath, err := q.quarantine(cause)
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.pub.quarantined, q.pub.quarantinedAt = qpath, q.clock.Now()
	q.mu.Unlock()
	db, err := q.openChecked()
	if err != nil {
		return nil, fmt.Errorf("open outbox %s after quarantine: %w", q.path, err)
	}
	return db, nil
}

// openRetryDelays are the waits before the attempts to open again after
// an error that is not about the file's content.
var openRetryDelays = []time.Duration{100 * time.Millisecond, 400 * time.Millisecond}

// openErr marks errors that mean the file itself is bad.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

func isCorruption(err error) bool {
	var ce *corruptError
	return errors.As(err, &ce)
}

func (q *Queue) boltOptions() *bolt.Options {
	limit := boltLimit(runtime.GOOS, q.opts.MaxSize, q.path)
	q.boltMax.Store(limit)
	mx := 0
	if limit <= int64(^uint(0)>>1) {
		mx = int(limit)
	}
	return &bolt.Options{Timeout: q.opts.OpenTimeout, MaxSize: mx}
}

// boltLimit is bbolt's own MaxSize, a backstop above ours so that ErrFull
// always comes first: our limit plus a margin for the pages a commit
// copies before it frees the old ones, rounded up to the size bbolt grows
// the file to when its pages reach that (see boltGrowth). It never goes
// below the current file, so that lowering max_size cannot make an
// existing file unopenable.
func boltLimit(goos string, maxSize int64, path string) int64 {
	want := maxSize + sizeMargin(maxSize)
	if fi, err := os.Stat(path); err == nil && fi.Size()+(64<<20) > want {
		want = fi.Size() + 64<<20
	}
	return boltGrowth(goos, want)
}

func sizeMargin(maxSize int64) int64 { return max(maxSize/4, 16<<20) }

// boltGrowth is the file size bbolt needs before its pages may reach n
// bytes, the size it compares with its MaxSize (bbolt 1.4/1.5 allocate):
// on Windows the file is the mapping, which grows in powers of two from
// 32 KiB to 1 GiB and then by 1 GiB; elsewhere the file grows by
// boltAllocSize beyond what the pages need once the mapping
// passes that size.
func boltGrowth(goos string, n int64) int64 {
	mapping := boltMmapSize(n)
	if goos == "windows" {
		return mapping
	}
	if mapping <= boltAllocSize {
		return mapping
	}
	return n + boltAllocSize
}

// boltAllocSize is bbolt's DefaultAllocSize (16 MiB), the step it grows
// a file by beyond the pages it needs (not exported by bbolt).
const boltAllocSize = 16 << 20

func boltMmapSize(n int64) int64 {
	for i := 15; i <= 30; i++ {
		if n <= 1<<i {
			return 1 << i
		}
	}
	const step = 1 << 30
	return (n + step - 1) / step * step
}

// openChecked opens the file and checks it; errors about the file's
// content come wrapped in corruptError, anything else (an I/O error, a
// sharing violation, no memory for the mapping) is returned as it is: the
// file may be fine, so it is reported and retried, never quarantined.
//
// An existing file is checked before bbolt may write to it: a read-write
// open commits (ensureBuckets) and on Windows grows the file to its
// mapping, so a damaged file would no longer be kept aside byte for byte.
// The check is: our own read of the meta pages (a truncated or scribbled
// file never reaches bbolt, whose reads through the mapping would fault),
// then a read-only bbolt open with its consistency check.
func (q *Queue) openChecked() (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(q.path), 0o700); err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", q.path, err)
	}
	fi, err := os.Stat(q.path)
	fresh := errors.Is(err, fs.ErrNotExist)
	if err != nil && !fresh {
		return nil, fmt.Errorf("open outbox %s: %w", q.path, err)
	}
	if !fresh && fi.Size() > 0 {
		_, err := precheckMeta(q.path)
		if err != nil {
			return nil, err
		}
		db, err := q.boltOpen(true)
		if err != nil {
			return nil, err
		}
		err = q.checkFile(db)
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("open outbox %s: close after check: %w", q.path, cerr)
		}
		if err != nil {
			return nil, err
		}
	}
	db, err := q.boltOpen(false)
	if err != nil {
		return nil, err
	}
	if err := q.layout(db); err != nil {
		_ = db.Close()
		if isCorruption(err) || errors.Is(err, errCorruptRecord) {
			return nil, &corruptError{fmt.Errorf("open outbox %s: %w", q.path, err)}
		}
		return nil, fmt.Errorf("open outbox %s: %w", q.path, err)
	}
	if fresh || fi.Size() == 0 {
		// The new file's directory entry (after a first start or a
		// quarantine rename) must be durable before any 202 rests on it.
		if err := atomicfile.SyncDir(filepath.Dir(q.path)); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("open outbox %s: fsync data dir: %w", q.path, err)
		}
	}
	return db, nil
}

// layout makes the buckets; the first write loads the freelist, and a
// damaged one makes bbolt panic.
func (q *Queue) layout(db *bolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
			if !isFaultPanic(r) {
				err = &corruptError{err}
			}
		}
	}()
	return db.Update(ensureBuckets)
}

// panicAfterOpenFile, set by tests, stands for a panic inside bbolt's
// Open after it has opened the file.
var panicAfterOpenFile func(readOnly bool)

// boltOpen opens the file with bbolt. A panic inside bbolt (a damaged
// page) is recovered, and the file handle bbolt had opened is closed: left
// open it would keep the lock and, on Windows, make the quarantine rename
// fail, so that the agent would crash-loop on the file.
func (q *Queue) boltOpen(readOnly bool) (db *bolt.DB, err error) {
	var f *os.File
	o := q.boltOptions()
	o.ReadOnly = readOnly
	o.OpenFile = func(name string, flag int, mode os.FileMode) (*os.File, error) {
		ff, err := os.OpenFile(name, flag, mode)
		f = ff
		if err == nil && panicAfterOpenFile != nil {
			panicAfterOpenFile(readOnly)
		}
		return ff, err
	}
	// A read through the mapping past the end of the file is SIGBUS, which
	// would kill the agent: turn such a fault into a panic we recover.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			} else if f != nil {
				_ = f.Close()
			}
			db, err = nil, fmt.Errorf("open outbox %s: %w", q.path, panicError(r))
			if !isFaultPanic(r) {
				err = &corruptError{err}
			}
		}
	}()
	db, err = bolt.Open(q.path, 0o600, o)
	if err == nil && !readOnly {
		q.dbFile.Store(f)
	}
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open outbox %s: %w", q.path, ErrLocked)
		case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
			return nil, &corruptError{fmt.Errorf("open outbox %s: %w", q.path, err)}
		}
		return nil, fmt.Errorf("open outbox %s: %w", q.path, err)
	}
	return db, nil
}

// checkFile runs the read-only checks of an existing file.
func (q *Queue) checkFile(db *bolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// A fault on a mapped page is an I/O error (or the file was
			// cut short under the mapping: the next open's precheck
			// tells); only what bbolt found wrong is damage.
			err = fmt.Errorf("check outbox %s: %w", q.path, panicError(r))
			if !isFaultPanic(r) {
				err = &corruptError{err}
			}
		}
	}()
	// Pages beyond the end of the file: truncated. Checked before any
	// page is touched, and before tx.Check, whose goroutine could not
	// recover from the fault.
	if err := notTruncated(db, q.path); err != nil {
		if !errors.Is(err, errCorruptRecord) {
			return fmt.Errorf("open outbox %s: %w", q.path, err) // stat failed: not about the content
		}
		return &corruptError{fmt.Errorf("open outbox %s: %w", q.path, err)}
	}
	// tx.Check reads every page through the mapping on a goroutine of
	// bbolt's own, where a fault (EIO on a sector) would kill the
	// process: the pages are read with plain reads first, so that an I/O
	// error is an error here, and the check then finds them in the cache.
	if q.opts.CheckMaxSize > 0 {
		if err := readThrough(q.path, q.opts.CheckMaxSize); err != nil {
			return fmt.Errorf("check outbox %s: %w", q.path, err)
		}
	}
	if err := q.check(db); err != nil {
		return &corruptError{fmt.Errorf("check outbox %s: %w", q.path, err)}
	}
	return nil
}

// readThrough reads the file (when it is at most limit bytes) with plain
// reads: an I/O error is returned as one.
func readThrough(path string, limit int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() > limit {
		return err
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < fi.Size(); {
		n, err := f.ReadAt(buf, off)
		off += int64(n)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if n == 0 {
			break
		}
	}
	return nil
}

// check runs bbolt's full consistency check on files up to CheckMaxSize
// and a cheap one (buckets, the pages of the first and last records) on
// bigger ones, so that opening a big queue stays fast and does not touch
// every page. Records are not decoded here: one damaged record is
// dead-lettered by itself when its turn comes, it does not condemn the
// file.
func (q *Queue) check(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		if q.opts.CheckMaxSize > 0 && tx.Size() <= q.opts.CheckMaxSize {
			for err := range tx.Check() {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		if m == nil {
			return nil // not made yet (a crash between create and layout): ensureBuckets does it
		}
		if v := getCounter(m, metaVersion); v != 0 && v != layoutVersion {
			return fmt.Errorf("%w: layout version %d, want %d", errCorruptRecord, v, layoutVersion)
		}
		t, err := openTxb(tx)
		if err != nil {
			return err
		}
		for _, b := range []*bolt.Bucket{t.items, t.dead, t.sched, t.bykey} {
			c := b.Cursor()
			firstKey(c)
			lastKey(c)
		}
		return nil
	})
}

// notTruncated fails when the file is shorter than its own high-water mark.
func notTruncated(db *bolt.DB, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("%w: file has %d bytes but its pages reach %d (truncated)", errCorruptRecord, fi.Size(), tx.Size())
		}
		return nil
	})
}

func firstKey(c *bolt.Cursor) []byte { k, _ := c.First(); return k }
func lastKey(c *bolt.Cursor) []byte  { k, _ := c.Last(); return k }

// quarantine moves the bad file aside and logs it loudly.
func (q *Queue) quarantine(cause error) (string, error) {
	stamp := q.clock.Now().UTC().Format("20060102T150405Z")
	dst := q.path + ".corrupt-" + stamp
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = fmt.Sprintf("%s.corrupt-%s-%d", q.path, stamp, i)
	}
	if err := os.Rename(q.path, dst); err != nil {
		return "", fmt.Errorf("quarantine corrupt outbox %s: %w (cause: %v)", q.path, err, cause)
	}
	q.log.Error("OUTBOX FILE CORRUPT: moved aside, starting with an empty queue; items in it were NOT delivered",
		"path", q.path, "moved_to", dst, "err", cause)
	return dst, nil
}

// counters are the lifetime counters loadCounters read, for the loop.
func (p *published) counters() counters {
	return counters{pending: p.pending, dead: p.dead, enqueued: p.enqueued,
		delivered: p.delivered, coalesced: p.coalesced, deadLettered: p.deadLettered}
}

func (q *Queue) loadCounters() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		q.pub.pending = int(getCounter(m, metaPending))
		q.pub.dead = int(getCounter(m, metaDead))
		q.pub.enqueued = getCounter(m, metaEnqueued)
		q.pub.delivered = getCounter(m, metaDelivered)
		q.pub.coalesced = getCounter(m, metaCoalesced)
		q.pub.deadLettered = getCounter(m, metaDeadLettered)
		return nil
	})
}

// Close stops the queue's writer and closes the file. Run should have
// returned first; a running Run returns ErrClosed. Close is idempotent.
func (q *Queue) Close() error {
	var err error
	q.closeOnce.Do(func() {
		close(q.quit)
		// A loop stuck behind the disk (a commit or fsync that does not
		// return: a frozen disk) must not hold the stop.
		wait := time.NewTimer(q.opts.CloseTimeout + time.Second)
		defer wait.Stop()
		select {
		case <-q.done:
		case <-wait.C:
			q.hung.Store(true)
		}
		if !q.hung.Load() {
			q.waitJanitor() // it waits for the loop's replies: not when that hung
		}
		if q.state != nil && !q.hung.Load() && !q.state.close(time.Second) {
			q.log.Warn("outbox: the record of what was committed could not be written in time at close")
		}
		if q.hung.Load() {
			// bbolt's Close would wait for the transaction that hangs;
			// the file and its lock are released when the process ends.
			err = fmt.Errorf("close outbox %s: %w", q.path, ErrCommitAbandoned)
			q.log.Error("outbox file left open at close: the disk did not finish a commit", "path", q.path)
			return
		}
		q.dbMu.Lock()
		defer q.dbMu.Unlock()
		if q.db != nil {
			if q.ls.sf.reopen != "" || q.ls.sf.faulted {
				q.closeAfterFault() // bbolt may be stuck since the fault: bounded
			} else if cerr := q.db.Close(); cerr != nil {
				err = fmt.Errorf("close outbox %s: %w", q.path, cerr)
			}
			q.db = nil
			q.dbFile.Store(nil)
		}
		if q.lock != nil {
			_ = q.lock.Close() // after the file: never unlocked while open
			q.lock = nil
		}
	})
	return err
}

func (q *Queue) closed() bool {
	select {
	case <-q.quit:
		return true
	default:
		return false
	}
}

// Path returns the file's path.
func (q *Queue) Path() string { return q.path }
