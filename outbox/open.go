package outbox

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

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

	reqs       chan request
	kick       chan struct{}
	commitDone chan commitResult
	quit       chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
	maxBatch   int // requests per transaction; 1 gives the naive baseline
	runMu      sync.Mutex
	running    bool

	mu  sync.Mutex // guards pub
	pub published

	ls loopState // owned by the loop goroutine
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
	compactions                                  int
	inFlightIDs                                  map[uint64]bool
	queued                                       int  // requests waiting for a commit (tests)
	committing                                   bool // a commit is running (tests)
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
		reqs: make(chan request, 1024), kick: make(chan struct{}, 1), commitDone: make(chan commitResult, 1),
		quit: make(chan struct{}), done: make(chan struct{}), maxBatch: opts.batchLimit,
	}
	if q.rnd == nil {
		q.rnd = rand.Float64
	}
	db, err := q.openChecked()
	if err != nil {
		if errors.Is(err, ErrLocked) || !isCorruption(err) {
			return nil, err
		}
		qpath, qerr := q.quarantine(err)
		if qerr != nil {
			return nil, qerr
		}
		q.pub.quarantined, q.pub.quarantinedAt = qpath, q.clock.Now()
		if db, err = q.openChecked(); err != nil {
			return nil, fmt.Errorf("open outbox %s after quarantine: %w", q.path, err)
		}
	}
	q.db = db
	if err := q.loadCounters(); err != nil {
		_ = db.Close()
		return nil, err
	}
	q.ls.init(q)
	go q.loop()
	return q, nil
}

// openErr marks errors that mean the file itself is bad.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

func isCorruption(err error) bool {
	var ce *corruptError
	return errors.As(err, &ce)
}

func (q *Queue) boltOptions() *bolt.Options {
	// bbolt's own MaxSize is a backstop above ours: our ErrFull comes first.
	// It never goes below the current file, so that lowering max_size
	// cannot make an existing file unopenable.
	backstop := q.opts.MaxSize + max(q.opts.MaxSize/4, 16<<20)
	if fi, err := os.Stat(q.path); err == nil && fi.Size()+(64<<20) > backstop {
		backstop = fi.Size() + 64<<20
	}
	mx := 0
	if backstop <= int64(^uint(0)>>1) {
		mx = int(backstop)
	}
	return &bolt.Options{Timeout: q.opts.OpenTimeout, MaxSize: mx}
}

// openChecked opens the file and checks it; errors about the file's
// content come wrapped in corruptError.
func (q *Queue) openChecked() (db *bolt.DB, err error) {
	if err := os.MkdirAll(filepath.Dir(q.path), 0o700); err != nil {
		return nil, fmt.Errorf("open outbox %s: %w", q.path, err)
	}
	// A truncated or scribbled file makes bbolt read through its mmap past
	// the end of the file: SIGBUS, which would kill the agent (and a
	// service manager would restart it into the same crash). Turn such a
	// fault into a panic we can recover from and quarantine the file.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, &corruptError{fmt.Errorf("open outbox %s: bbolt panicked: %v", q.path, r)}
		}
	}()
	db, err = bolt.Open(q.path, 0o600, q.boltOptions())
	if err != nil {
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open outbox %s: %w", q.path, ErrLocked)
		case errors.Is(err, fs.ErrPermission), errors.Is(err, fs.ErrNotExist), errors.Is(err, berrors.ErrMaxSizeReached):
			return nil, fmt.Errorf("open outbox %s: %w", q.path, err)
		}
		return nil, &corruptError{fmt.Errorf("open outbox %s: %w", q.path, err)}
	}
	// Pages beyond the end of the file: truncated. Checked before any
	// page is touched, and before tx.Check, whose goroutine could not
	// recover from the fault.
	if err := notTruncated(db, q.path); err != nil {
		_ = db.Close()
		return nil, &corruptError{fmt.Errorf("open outbox %s: %w", q.path, err)}
	}
	if err := db.Update(ensureBuckets); err != nil {
		_ = db.Close()
		return nil, &corruptError{fmt.Errorf("open outbox %s: %w", q.path, err)}
	}
	if err := q.check(db); err != nil {
		_ = db.Close()
		return nil, &corruptError{fmt.Errorf("check outbox %s: %w", q.path, err)}
	}
	return db, nil
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
		if tx.Bucket(bucketMeta) == nil {
			return nil // not made yet (a crash between create and layout): ensureBuckets does it
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

func (q *Queue) loadCounters() error {
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
		<-q.done
		q.dbMu.Lock()
		defer q.dbMu.Unlock()
		if q.db != nil {
			if cerr := q.db.Close(); cerr != nil {
				err = fmt.Errorf("close outbox %s: %w", q.path, cerr)
			}
			q.db = nil
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
