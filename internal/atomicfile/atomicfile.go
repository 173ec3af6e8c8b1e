// Package atomicfile writes small files so that a crash or a power cut
// leaves either the old content or the new one, never a mix: a temporary
// file in the same directory, fsync, rename over the target, fsync of the
// directory. The agent's caches (licence, device identity, API address) and
// the installer's config file are written this way.
//
// It imports nothing of the project.
package atomicfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to path with mode perm, creating the directory (0700)
// when it is missing.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteSecured(path, data, perm, nil)
}

// WriteSecured is Write with a hook that runs on the temporary file before
// any data is written to it, e.g. to set a Windows ACL, so that the data is
// never readable by others for a moment.
func WriteSecured(path string, data []byte, perm fs.FileMode, secure func(tmp string) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := chmod(f, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if secure != nil {
		if err := secure(tmp); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := replace(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync dir: %w", path, err)
	}
	return nil
}

// Open opens a file written by Write for reading. On Windows a reader
// that opens the file while Write renames a new one over it gets a
// sharing violation (or access denied) for that moment; Open retries
// those for about a second. Elsewhere it is os.Open.
func Open(path string) (*os.File, error) { return openRetrying(path) }

// ReadFile is os.ReadFile through Open.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
