package chaos

import "testing"

// raiseFileLimit: Windows has no per-process limit on sockets to raise.
func raiseFileLimit(t *testing.T, n int) { t.Helper() }
