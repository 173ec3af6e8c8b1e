package outbox

// Compaction: a drained file much bigger than its content is rewritten
// and swapped in.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/tposagent/tposagent/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// maybeCompact rewrites a drained file that is much bigger than its content.
func (q *Queue) maybeCompact() {
	q.kickJanitor() // a drain: what only the records kept may go now
	if q.opts.CompactMinSize < 0 {
		return
	}
	fi, err := os.Stat(q.path)
	if err != nil || fi.Size() < q.opts.CompactMinSize {
		return
	}
	var used int64
	_ = q.guard(func() error { return q.db.View(func(tx *bolt.Tx) error { used = usedBytes(q.db, tx); return nil }) })
	if used*4 > fi.Size() {
		return
	}
	if err := q.guard(q.compact); err != nil {
		q.log.Error("outbox compaction failed", "err", err)
		q.noteFileFault(err)
		return
	}
	q.ls.compactions++
	q.boltSize.Store(0) // a smaller file now: the next commit says how big (faults.go)
	after := int64(0)
	if fi2, err := os.Stat(q.path); err == nil {
		after = fi2.Size()
	}
	q.log.Info("outbox compacted", "before_bytes", fi.Size(), "after_bytes", after)
}

// compactCloseFirst: the old file and the copy are closed before the
// rename and the file is opened again after it. Windows cannot rename over
// a file that is open; elsewhere the copy, already open and locked, is
// renamed into place and kept, so the file is never closed and its lock
// never released. Tests set it to exercise the Windows path.
var compactCloseFirst = runtime.GOOS == "windows"

// reopenFail, set by tests, makes that many reopens after compaction fail.
var reopenFail atomic.Int32

// compact copies the live content into a fresh file and swaps it in.
func (q *Queue) compact() error {
	tmp := q.path + ".compact"
	_ = os.Remove(tmp)
	q.boltSize.Store(0) // a smaller file comes: the next commit says how big (faults.go)
	var dstFile *os.File
	dst, err := bolt.Open(tmp, 0o600, capture(q.boltOptions(), &dstFile))
	if err != nil {
		return fmt.Errorf("compact outbox: open %s: %w", tmp, err)
	}
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	if err := bolt.Compact(dst, q.db, 64<<20); err != nil {
		_ = dst.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("compact outbox: %w", err)
	}
	if !compactCloseFirst {
		if err := os.Rename(tmp, q.path); err != nil {
			_ = dst.Close()
			_ = os.Remove(tmp)
			return fmt.Errorf("compact outbox: rename: %w", err)
		}
		old := q.db
		q.db = dst
		q.dbFile.Store(dstFile)
		q.noteIdentity()
		q.syncDirOrMark()
		if err := old.Close(); err != nil {
			q.log.Warn("outbox compaction: close the old file", "err", err)
		}
		return nil
	}
	if err := dst.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact outbox: close %s: %w", tmp, err)
	}
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("compact outbox: close: %w", err)
	}
	q.dbFile.Store(nil)
	renameErr := os.Rename(tmp, q.path)
	if renameErr == nil {
		q.noteIdentity() // the file at the path is ours, open or not
		q.syncDirOrMark()
	} else {
		_ = os.Remove(tmp)
	}
	if err := q.reopen("after compaction"); err != nil {
		return fmt.Errorf("compact outbox: %w", err)
	}
	if renameErr != nil {
		return fmt.Errorf("compact outbox: rename: %w", renameErr)
	}
	return nil
}

// reopenDelays are the waits between attempts to open the file again
// after compaction closed it (Windows): an antivirus or indexer holding
// it for a moment must not leave the queue closed.
var reopenDelays = []time.Duration{0, 10 * time.Millisecond, 50 * time.Millisecond, 200 * time.Millisecond, time.Second}

// reopen opens the file after compaction (or a lost mapping, remap.go)
// closed it, retrying; on failure the queue stays closed (every operation
// fails with a clear error) and the loop tries again (ensureOpen). why
// ends the messages ("after compaction"). Called with dbMu held.
func (q *Queue) reopen(why string) error {
	if q.ls.openAtStart {
		return q.openLate()
	}
	var err error
	for i, d := range reopenDelays {
		time.Sleep(d)
		var db *bolt.DB
		var f *os.File
		if reopenFail.Load() > 0 {
			reopenFail.Add(-1)
			err = errors.New("injected reopen failure")
		} else {
			db, err = bolt.Open(q.path, 0o600, capture(q.boltOptions(), &f))
		}
		if err == nil {
			q.db = db
			q.dbFile.Store(f)
			q.boltSize.Store(0) // the next commit says how big (faults.go)
			q.noteIdentity()
			q.ls.reopenErr = ""
			if i > 0 {
				q.log.Warn("outbox file reopened "+why, "attempts", i+1)
			}
			return nil
		}
	}
	q.ls.reopenErr, q.ls.reopenWhy = fmt.Sprintf("cannot open the outbox file again %s: %v", why, err), why
	q.log.Error("OUTBOX FILE CLOSED: "+q.ls.reopenErr+"; records are refused until it opens", "path", q.path)
	return fmt.Errorf("reopen: %w", err)
}

// openLate is one more attempt at the open that failed in Open
// (Options.KeepTrying): the full one, with the check, the quarantine of a
// damaged file and the counters. Called with dbMu held.
func (q *Queue) openLate() error {
	ls := &q.ls
	db, err := q.openChecked()
	if err != nil && isCorruption(err) {
		db, err = q.quarantineAndOpen(err)
	}
	if err != nil {
		msg := fmt.Sprintf("cannot open the outbox file: %v", err)
		if msg != ls.reopenErr {
			q.log.Error("OUTBOX FILE CANNOT BE OPENED: records are refused until it opens", "path", q.path, "err", err)
		} else {
			q.log.Debug("outbox file still cannot be opened; trying again", "path", q.path)
		}
		ls.reopenErr = msg
		return fmt.Errorf("open outbox: %w", err)
	}
	q.db = db
	if err := q.loadCounters(); err != nil {
		_ = db.Close()
		q.db = new(bolt.DB)
		ls.reopenErr = fmt.Sprintf("cannot open the outbox file: %v", err)
		return err
	}
	q.noteIdentity()
	ls.c = q.pub.counters() // what loadCounters read
	running := ls.reopenWhy == reopenAfterFaultWhy || ls.reopenWhy == reopenAfterCommitWhy
	ls.reopenErr, ls.openAtStart, ls.sf.reopenFails = "", false, 0
	q.startState(running)
	when := "after it could not be at start"
	if running {
		when = ls.reopenWhy
	}
	q.log.Warn("outbox file opened "+when, "path", q.path, "pending", ls.c.pending, "dead", ls.c.dead)
	return nil
}

// ensureOpen retries a failed reopen; it reports whether the file is open.
func (q *Queue) ensureOpen() bool {
	if q.ls.reopenErr == "" {
		return true
	}
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	return q.reopen(q.ls.reopenWhy) == nil
}

// syncDirOrMark fsyncs the data dir after a rename; when that fails the
// next commits try again before they answer (dirDirty).
func (q *Queue) syncDirOrMark() {
	if err := atomicfile.SyncDir(filepath.Dir(q.path)); err != nil {
		q.dirDirty.Store(true)
		q.log.Error("outbox: cannot fsync the data dir after a rename; records are refused until it succeeds", "err", err)
	}
}
