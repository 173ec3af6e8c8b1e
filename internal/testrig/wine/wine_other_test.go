//go:build !windows

package wine

import "testing"

func TestNotRunningOutsideWindows(t *testing.T) {
	if Running() || Version() != "" {
		t.Fatalf("Running() = %v, Version() = %q on a non-Windows build", Running(), Version())
	}
}
