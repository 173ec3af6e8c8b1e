package outbox

// A lost mapping. When bbolt cannot map the file again as it grows (out
// of address space on a 32-bit till, or out of handles on Windows:
// "CreateFileMapping: Too many open files"), the commit fails and the
// file is left unmapped: every later transaction fails with
// ErrInvalidMapping until the file is opened again. The loop then closes
// and reopens it and runs the failed commit again, so that a passing
// shortage of memory or handles neither stops the queue for good nor
// loses a send result (which would send the record twice).

import (
	"errors"
	"strings"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// remapRetryWindow: a commit that loses the mapping again within this
// (real) time of the last reopen is answered with its error instead of
// being run again, so a shortage that lasts cannot spin the loop.
const remapRetryWindow = time.Second

// mappingLost reports whether err says bbolt's mapping of the file is
// gone. bbolt wraps the failed mmap with %s, so that one is known only by
// its text.
func mappingLost(err error) bool {
	return err != nil && (errors.Is(err, berrors.ErrInvalidMapping) || strings.Contains(err.Error(), "mmap allocate error"))
}

// requeueAfterLostMapping: the commit failed because the mapping was lost;
// its requests go back to the front of the queue to run again on the
// reopened file, unless the last reopen was only just now. It reports
// whether it took them.
func (q *Queue) requeueAfterLostMapping(res commitResult) bool {
	ls := &q.ls
	if !mappingLost(res.err) {
		return false
	}
	ls.remap = true
	if !ls.lastRemap.IsZero() && time.Since(ls.lastRemap) < remapRetryWindow {
		return false
	}
	q.log.Warn("outbox commit lost the file's memory mapping; it runs again once the file is open", "err", res.err, "requests", len(res.job.ops))
	ls.pendingOps = append(append([]request(nil), res.job.ops...), ls.pendingOps...)
	return true
}

// remapIfNeeded closes and reopens the file after a lost mapping. Called
// from the loop when no commit runs.
func (q *Queue) remapIfNeeded() {
	ls := &q.ls
	if !ls.remap || ls.committing {
		return
	}
	ls.remap = false
	ls.lastRemap = time.Now()
	if ls.reopenErr != "" {
		return // closed already; ensureOpen retries
	}
	q.dbMu.Lock()
	defer q.dbMu.Unlock()
	if err := q.db.Close(); err != nil {
		q.log.Warn("outbox: close the unmapped file", "err", err)
	}
	q.dbFile.Store(nil)
	if err := q.reopen("after it lost its memory mapping"); err == nil {
		ls.remaps++
		q.log.Warn("outbox file opened again after it lost its memory mapping", "times", ls.remaps)
	}
}
