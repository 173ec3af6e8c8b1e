package outbox

// What the queue knows about its file, kept outside it.
//
// <path>.state (JSON, written atomically) holds the highest id the queue
// has given out, the pending and dead counts and the sum of the lifetime
// counters, as of a commit that is on disk: it is written after the
// commit's fsync, at most once a second and at Close, by a goroutine of
// its own (a frozen disk never stops the loop). It is therefore never
// ahead of what the file durably holds, and a file that holds less — found
// empty, shorter or older (a backup put back, a disk tool's "repair") — is
// reported loudly: an error in the log (the system log: journal or Event
// Log), Stats.Emptied and Stats.LastError. The file found is kept (an
// empty one simply becomes the new queue; an older one goes on with what
// it holds), and the state is then taken from it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/tposagent/tposagent/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// fileState is the content of <path>.state.
type fileState struct {
	LastID   uint64    `json:"last_id"`  // items' sequence: the highest id given out
	Pending  int       `json:"pending"`  // accepted, not delivered
	Dead     int       `json:"dead"`     // dead letters
	Progress uint64    `json:"progress"` // enqueued+delivered+coalesced+dead_lettered
	At       time.Time `json:"at"`       // when it was written (wall clock)
}

// StateFileSuffix names the file beside the outbox that keeps what the
// queue last committed: <path>.state.
const StateFileSuffix = ".state"

func statePath(path string) string { return path + StateFileSuffix }

// fileLastID reads the items' sequence of the open file (Open, or the loop
// with dbMu held: not through view).
func (q *Queue) fileLastID() (uint64, error) {
	var seq uint64
	err := q.guard(func() error {
		return q.db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket(bucketItems); b != nil {
				seq = b.Sequence()
			}
			q.boltSize.Store(tx.Size())
			return nil
		})
	})
	return seq, err
}

// readState reads the state beside path; ok is false when there is none
// (a first start, or an agent that did not keep one yet) or it cannot be
// read (then the check is skipped, never failed).
func readState(path string) (fileState, bool, error) {
	b, err := os.ReadFile(statePath(path))
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{}, false, nil
	}
	if err != nil {
		return fileState{}, false, err
	}
	var st fileState
	if err := json.Unmarshal(b, &st); err != nil {
		return fileState{}, false, fmt.Errorf("read %s: %w", statePath(path), err)
	}
	return st, true, nil
}

// emptiedMessage is the status warning of a file found with less than
// the queue had committed.
func emptiedMessage(missing int, running bool) string {
	when := "while the agent was stopped"
	if running {
		when = "while the agent ran"
	}
	return fmt.Sprintf("the outbox file was emptied or replaced %s: %d records that were accepted are not in it", when, missing)
}

// checkAgainstState compares the opened file (its counters in q.pub, its
// last id) with the state kept beside it. running: the file was opened
// again after a fault, not at start. It returns the status warning, or "".
func (q *Queue) checkAgainstState(lastID uint64, running bool) string {
	want, ok, err := readState(q.path)
	if err != nil {
		q.log.Warn("outbox: cannot read what the agent last committed; the file is not compared with it", "err", err)
		return ""
	}
	if !ok {
		return ""
	}
	p := &q.pub
	progress := p.enqueued + p.delivered + p.coalesced + p.deadLettered
	if lastID >= want.LastID && progress >= want.Progress {
		return ""
	}
	missing := want.Pending + want.Dead
	if lastID > 0 || progress > 0 {
		// An older copy: of the records accepted after it was taken, at
		// most those still held then are missing.
		missing = min(missing, int(min(want.LastID-min(lastID, want.LastID), uint64(1<<31))))
	}
	msg := emptiedMessage(missing, running)
	q.log.Error("OUTBOX FILE EMPTIED OR REPLACED: "+msg+"; the file found is kept and used",
		"path", q.path, "last_id_committed", want.LastID, "last_id_in_file", lastID,
		"pending_committed", want.Pending, "dead_committed", want.Dead, "state_written_at", want.At)
	return msg
}

// stateWriter writes <path>.state from its own goroutine: the latest
// state handed to it, at most once a second.
type stateWriter struct {
	path string
	q    *Queue

	mu      sync.Mutex
	next    *fileState    // waiting to be written
	last    fileState     // last handed in
	wake    chan struct{} // cap 1
	stop    chan struct{}
	done    chan struct{}
	fails   int
	started bool
}

func newStateWriter(q *Queue) *stateWriter {
	return &stateWriter{path: q.path, q: q, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// put hands the state of a commit that is on disk to the writer (loop).
func (w *stateWriter) put(st fileState) {
	w.mu.Lock()
	if st.LastID == w.last.LastID && st.Pending == w.last.Pending && st.Dead == w.last.Dead && st.Progress == w.last.Progress {
		w.mu.Unlock()
		return
	}
	w.last = st
	w.next = &st
	if !w.started {
		w.started = true
		go w.run()
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *stateWriter) run() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			w.flush()
			return
		}
		w.flush()
		select { // at most one write a second
		case <-time.After(time.Second):
		case <-w.stop:
			w.flush()
			return
		}
	}
}

func (w *stateWriter) flush() {
	w.mu.Lock()
	st := w.next
	w.next = nil
	w.mu.Unlock()
	if st == nil {
		return
	}
	st.At = time.Now().UTC()
	b, _ := json.Marshal(st) // plain fields: never fails
	if err := atomicfile.Write(statePath(w.path), append(b, '\n'), 0o600); err != nil {
		if w.fails++; w.fails == 1 || w.fails%60 == 0 {
			w.q.log.Warn("outbox: cannot record what was committed beside the file", "err", err, "failures", w.fails)
		}
		return
	}
	w.fails = 0
}

// close writes what is waiting and stops, waiting at most d (a frozen
// disk): it reports whether the writer finished.
func (w *stateWriter) close(d time.Duration) bool {
	w.mu.Lock()
	started := w.started
	w.started = true // no new goroutine after this
	w.mu.Unlock()
	if !started {
		return true
	}
	close(w.stop)
	select {
	case <-w.done:
		return true
	case <-time.After(d):
		return false
	}
}

// noteCommitted hands the state after a commit that succeeded to the
// writer (loop goroutine).
func (q *Queue) noteCommitted(lastID uint64) {
	if q.state == nil {
		return
	}
	c := q.ls.c
	q.state.put(fileState{LastID: lastID, Pending: c.pending, Dead: c.dead,
		Progress: c.enqueued + c.delivered + c.coalesced + c.deadLettered})
}
