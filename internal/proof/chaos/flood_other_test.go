//go:build !windows

package chaos

import (
	"syscall"
	"testing"
)

// checkFileLimit fails when this process may not open n files (Go has
// already raised the soft limit to the hard one at start).
func checkFileLimit(t *testing.T, n int) {
	t.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if l.Cur < uint64(n) {
		t.Fatalf("RLIMIT_NOFILE is %d, the flood needs %d: raise it (ulimit -n)", l.Cur, n)
	}
}
