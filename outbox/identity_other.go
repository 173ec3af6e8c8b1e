//go:build !windows

package outbox

import (
	"errors"
	"os"
	"syscall"
)

// fileKey identifies a file independently of its name.
type fileKey struct{ dev, ino uint64 }

// readFileKey reads the identity of the file path names.
func readFileKey(path string) (fileKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileKey{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, errors.New("no device and inode for " + path)
	}
	return fileKey{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}
