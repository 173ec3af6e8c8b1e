package chaos

import "testing"

// checkFileLimit: Windows has no per-process limit on sockets to raise.
func checkFileLimit(t *testing.T, n int) { t.Helper() }
