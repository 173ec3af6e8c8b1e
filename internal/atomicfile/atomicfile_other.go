//go:build !windows

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

func chmod(f *os.File, perm fs.FileMode) error { return f.Chmod(perm) }

// replace renames tmp over dst atomically.
func replace(tmp, dst string) error { return os.Rename(tmp, dst) }

// SyncDir makes a rename in dir durable. A filesystem that cannot sync
// directories (EINVAL) is not an error: there is nothing more to do.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

func openRetrying(path string) (*os.File, error) { return os.Open(path) }
