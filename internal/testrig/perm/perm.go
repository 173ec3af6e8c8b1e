// Package perm checks, the way the operating system sees it, that a file or
// directory holding secrets is closed to other users: Unix modes on Linux,
// the DACL on Windows. Tests use it so that one assertion is portable.
package perm

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"github.com/tposagent/tposagent/internal/testrig/wine"
)

// ErrOpen means path can be read by someone other than its owner (Unix) or
// than SYSTEM, the Administrators and the owner (Windows).
var ErrOpen = errors.New("readable by others")

// Check fails t when path is open to others. Under wine, where ACLs are
// accepted and discarded, it skips t naming that limit, so call it after
// a test's other checks.
func Check(t testing.TB, path string) {
	t.Helper()
	if err := OwnerOnly(path); err != nil {
		wine.Skip(t, wine.ACLsDiscarded)
		t.Error(err)
	}
}

// Want checks that path is closed to others the way this OS expresses it:
// exactly mode on Unix, an owner-only ACL on Windows (see Check: under wine
// it skips t, so call it after a test's other checks).
func Want(t testing.TB, path string, mode os.FileMode) {
	t.Helper()
	if runtime.GOOS == "windows" {
		Check(t, path)
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	if got := st.Mode().Perm(); got != mode {
		t.Errorf("%s: mode %v, want %v", path, got, mode)
	}
}

// OwnerOnly returns nil when path is closed to other users, or an error
// wrapping ErrOpen that says what is open.
func OwnerOnly(path string) error { return ownerOnly(path) }

// RestrictDir closes dir to others as the installer does for the data
// directory: 0700 on Unix; on Windows a protected DACL for SYSTEM and the
// Administrators that files created inside inherit.
func RestrictDir(dir string) error { return restrictDir(dir) }
