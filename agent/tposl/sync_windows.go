//go:build windows

package tposl

import (
	"os"
	"time"
)

// syncDir is a no-op on Windows: NTFS journals the rename (MoveFileEx with
// MOVEFILE_REPLACE_EXISTING, which os.Rename uses) and a directory cannot
// be opened for FlushFileBuffers without backup privileges.
func syncDir(string) error { return nil }

// replaceFile renames tmp over dst. A reader that has dst open (Go opens
// files without FILE_SHARE_DELETE) makes the rename fail for a moment, so
// it is retried for up to about a second.
func replaceFile(tmp, dst string) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = os.Rename(tmp, dst); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}
