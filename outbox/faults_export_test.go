package outbox

import (
	"errors"
	"time"
)

// MetaPagesForTest returns the page size and the root and freelist pages
// of a closed file, as the precheck reads them.
func MetaPagesForTest(path string) (pageSize int, root, freelist uint64, err error) {
	m, err := precheckMeta(path)
	return int(m.pageSize), m.root, m.freelist, err
}

// FinishAbandonedForTest waits (up to d) for the commit that Close
// abandoned to return, then closes the file Close left open.
func (q *Queue) FinishAbandonedForTest(d time.Duration) error {
	if !q.hung.Load() {
		return nil
	}
	select {
	case <-q.commitDone:
	case <-time.After(d):
		return errors.New("the abandoned commit did not return")
	}
	err := q.db.Close()
	if q.lock != nil {
		_ = q.lock.Close()
	}
	return err
}
