// Package wine tells a test whether it runs under wine (the windows/amd64
// suite in CI runs there) and skips a test with the wine limit named, so
// that a skip never hides a Windows behaviour behind "windows" in general.
package wine

import "testing"

// Limits of wine 8 that tests name when they skip.
const (
	// ACLsDiscarded: SetNamedSecurityInfo succeeds but the DACL read back
	// is the default one (Everyone), so no ACL can be checked.
	ACLsDiscarded = "ACLs set with SetNamedSecurityInfo are accepted and discarded (the DACL reads back as Everyone)"
)

// Version is wine's version ("8.0") when the process runs under wine, else "".
func Version() string { return version() }

// Running reports whether the process runs under wine.
func Running() bool { return version() != "" }

// Skip skips t when it runs under wine, naming the wine version and the
// limit of wine that makes the check meaningless there. Elsewhere (real
// Windows, Linux) it does nothing and the test goes on.
func Skip(t testing.TB, limit string) {
	t.Helper()
	if v := version(); v != "" {
		t.Skipf("wine %s: %s", v, limit)
	}
}
