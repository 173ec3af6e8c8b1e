//go:build !windows

package outbox

import (
	"os"
	"syscall"
)

// syscallUnlock drops bbolt's flock on f (closeAfterFault).
func syscallUnlock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
