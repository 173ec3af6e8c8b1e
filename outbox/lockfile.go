package outbox

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// LockFileSuffix names the lock file held beside the outbox where
// compaction has to close the file (Windows): <path>.lock.
const LockFileSuffix = ".lock"

// holdLock takes the lock that keeps a second agent away while the file
// itself is closed. bbolt locks the file it has open, but on Windows
// compaction closes the file to rename over it, and a reopen may fail and
// be retried for a while: without a lock of its own the queue would leave
// the file unlocked then. The lock on <path>.lock is taken before bbolt's,
// held until Close, and waited for up to timeout (ErrLocked after it).
// Elsewhere the compacted copy is renamed into place while open and locked,
// so no second lock is needed (nil, nil).
func holdLock(path string, timeout time.Duration) (io.Closer, error) {
	if !compactCloseFirst {
		return nil, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	lockPath := path + LockFileSuffix
	deadline := time.Now().Add(timeout)
	for {
		f, busy, err := tryLockFile(lockPath)
		switch {
		case err == nil:
			return f, nil
		case !busy:
			return nil, fmt.Errorf("open outbox %s: lock file %s: %w", path, lockPath, err)
		case time.Now().After(deadline):
			return nil, fmt.Errorf("open outbox %s: %w", path, ErrLocked)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
