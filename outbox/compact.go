package outbox

// Compaction: a drained file much bigger than its content is rewritten
// and swapped in.

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tposagent/tposagent/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// maybeCompact rewrites a drained file that is much bigger than its content.
func (q *Queue) maybeCompact() {
	if q.opts.CompactMinSize < 0 {
		return
	}
	fi, err := os.Stat(q.path)
	if err != nil || fi.Size() < q.opts.CompactMinSize {
		return
	}
	var used int64
	_ = q.db.View(func(tx *bolt.Tx) error { used = usedBytes(q.db, tx); return nil })
	if used*4 > fi.Size() {
		return
	}
	if err := q.compact(); err != nil {
		q.log.Error("outbox compaction failed", "err", err)
		return
	}
	q.ls.compactions++
	after := int64(0)
	if fi2, err := os.Stat(q.path); err == nil {
		after = fi2.Size()
	}
	q.log.Info("outbox compacted", "before_bytes", fi.Size(), "after_bytes", after)
}

// compact copies the live content into a fresh file and swaps it in.
func (q *Queue) compact() error {
	tmp := q.path + ".compact"
	_ = os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, q.boltOptions())
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
	if err := dst.Close(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact outbox: close %s: %w", tmp, err)
	}
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("compact outbox: close: %w", err)
	}
	renameErr := os.Rename(tmp, q.path)
	if renameErr == nil {
		if err := atomicfile.SyncDir(filepath.Dir(q.path)); err != nil {
			// The new name may not survive a power cut; a second try is
			// cheap, and a failure must at least be visible.
			if err = atomicfile.SyncDir(filepath.Dir(q.path)); err != nil {
				q.log.Error("outbox compaction: cannot fsync the data dir; the compacted file's name may not survive a power cut", "err", err)
			}
		}
	} else {
		_ = os.Remove(tmp)
	}
	db, err := bolt.Open(q.path, 0o600, q.boltOptions())
	if err != nil {
		// Nothing sensible is left to do but to report it loudly.
		q.log.Error("outbox reopen after compaction failed", "err", err)
		return fmt.Errorf("compact outbox: reopen: %w", err)
	}
	q.db = db
	q.noteIdentity()
	if renameErr != nil {
		return fmt.Errorf("compact outbox: rename: %w", renameErr)
	}
	return nil
}
