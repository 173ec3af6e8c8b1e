//go:build !windows

package outbox

import (
	"errors"
	"os"
	"syscall"
)

// tryLockFile opens path and takes an exclusive flock on it (busy when
// another open file description holds it).
func tryLockFile(path string) (f *os.File, busy bool, err error) {
	f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, errors.Is(err, syscall.EWOULDBLOCK), err
	}
	return f, false, nil
}
