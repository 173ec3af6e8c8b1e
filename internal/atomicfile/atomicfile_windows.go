//go:build windows

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// chmod: Windows has no Unix modes; access is set by ACLs (see
// WriteSecured), and the temporary file inherits the directory's.
func chmod(*os.File, fs.FileMode) error { return nil }

// replace renames tmp over dst (MoveFileEx with MOVEFILE_REPLACE_EXISTING).
// A reader that has dst open (Go opens files without FILE_SHARE_DELETE)
// makes the rename fail for a moment, so it is retried for about a second.
func replace(tmp, dst string) error {
	return forAboutASecond(func() error { return os.Rename(tmp, dst) }, func(error) bool { return true })
}

// forAboutASecond runs op until it succeeds, fails with an error that is
// not transient, or about a second has passed; the last error is returned.
func forAboutASecond(op func() error, transient func(error) bool) error {
	var err error
	for range 20 {
		if err = op(); err == nil || !transient(err) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// SyncDir is a no-op on Windows: NTFS journals the rename, and a directory
// cannot be opened for FlushFileBuffers without backup privileges.
func SyncDir(string) error { return nil }

// openRetrying retries the errors a reader meets while replace renames a
// new file over path: a sharing violation, or access denied while the old
// file is pending deletion.
func openRetrying(path string) (*os.File, error) {
	var f *os.File
	err := forAboutASecond(func() (err error) {
		f, err = os.Open(path)
		return err
	}, func(err error) bool {
		return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_ACCESS_DENIED)
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}
