package outbox

// The file's identity: if outbox.db is deleted or replaced while the agent
// runs, the open handle still works, so every commit would succeed into a
// file that no longer has a name, and everything accepted since would be
// gone at the next start. Each commit compares the open file with the path
// before it answers, the loop does so every identityCheckEvery, and Stats
// whenever it is called; on a mismatch new records are refused and the
// open file's content is written back to the path (when nothing is there)
// or next to it.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tposagent/tposagent/internal/atomicfile"
	bolt "go.etcd.io/bbolt"
)

// identityCheckEvery is how often an idle queue checks its file (real time).
const identityCheckEvery = 10 * time.Second

// noteIdentity remembers which file is open; called right after each
// open of the path.
func (q *Queue) noteIdentity() {
	k, err := readFileKey(q.path)
	if err != nil {
		q.log.Warn("outbox: cannot read the open file's identity; a deleted file will not be noticed", "err", err)
		return
	}
	q.ident.Store(&k)
}

// fileGone tells whether the path no longer names the open file: "" when
// it does (or it cannot tell), else what happened.
func (q *Queue) fileGone() string {
	// Not in the middle of compaction's swap (rename, then noteIdentity).
	q.dbMu.RLock()
	defer q.dbMu.RUnlock()
	p := q.ident.Load()
	if p == nil {
		return ""
	}
	k, err := readFileKey(q.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "deleted"
	case err != nil:
		// A passing failure to read the identity (on Windows, a sharing
		// violation while an antivirus scans the file) says nothing.
		return ""
	case k != *p:
		return "replaced by another file"
	}
	return ""
}

// onFileGone reacts once, in the loop: log loudly, refuse new records,
// and save what the open file holds where it will be found.
func (q *Queue) onFileGone(what string) {
	ls := &q.ls
	if ls.gone != "" || ls.reopenErr != "" {
		return
	}
	saved, err := q.rescue(what)
	ls.gone = fmt.Sprintf("outbox file %s was %s while the agent ran; new records are refused until the agent is restarted", q.path, what)
	if err != nil {
		ls.gone += fmt.Sprintf("; saving the accepted records FAILED (%v): they are delivered only while the agent keeps running", err)
	} else {
		ls.gone += "; every accepted record was saved to " + saved
	}
	q.log.Error("OUTBOX FILE "+what+" WHILE RUNNING: refusing new records; records already accepted are still delivered from the open file",
		"path", q.path, "saved_to", saved, "save_err", err)
	q.publish()
}

// rescue writes the open file's content back to the path when nothing is
// there (the next start finds it), else next to it.
func (q *Queue) rescue(what string) (string, error) {
	dst := q.path
	if what != "deleted" {
		dst = q.path + ".rescued-" + q.clock.Now().UTC().Format("20060102T150405Z")
	}
	tmp := q.path + ".rescue-tmp"
	_ = os.Remove(tmp)
	err := q.guard(func() error { return q.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(tmp, 0o600) }) })
	if err == nil {
		err = syncFile(tmp)
	}
	if err == nil {
		// Link, not rename: it fails if a file appeared at dst meanwhile.
		if err = os.Link(tmp, dst); err == nil {
			_ = os.Remove(tmp)
		} else if errors.Is(err, fs.ErrExist) && dst == q.path {
			dst = q.path + ".rescued-" + q.clock.Now().UTC().Format("20060102T150405Z")
			err = os.Rename(tmp, dst)
		} else {
			err = os.Rename(tmp, dst)
		}
	}
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(q.path))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("save outbox to %s: %w", dst, err)
	}
	return dst, nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
