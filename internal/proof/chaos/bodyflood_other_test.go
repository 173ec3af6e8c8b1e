//go:build !windows

package chaos

import (
	"syscall"
	"testing"
)

// raiseFileLimit makes sure this process (and the agent it starts, which
// inherits the limit) may open n files: Go raised the soft limit to the
// hard one at start; as root the hard one can be raised too. Skips, saying
// why, when it cannot.
func raiseFileLimit(t *testing.T, n int) {
	t.Helper()
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if l.Cur >= uint64(n) {
		return
	}
	want := syscall.Rlimit{Cur: uint64(n), Max: max(l.Max, uint64(n))}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		t.Skipf("RLIMIT_NOFILE is %d (hard %d) and cannot be raised to %d (%v): the flood needs a file per connection; run as root or with ulimit -n %d", l.Cur, l.Max, n, err, n)
	}
}
