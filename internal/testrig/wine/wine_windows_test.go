//go:build windows

package wine

import (
	"testing"

	"golang.org/x/sys/windows/registry"
)

// Wine keeps its own settings under HKLM\Software\Wine; real Windows has
// no such key. The two ways of telling must agree.
func TestRunningAgreesWithRegistry(t *testing.T) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `Software\Wine`, registry.QUERY_VALUE)
	hasKey := err == nil
	if hasKey {
		k.Close()
	}
	if Running() != hasKey {
		t.Fatalf("Running() = %v (version %q), but HKLM\\Software\\Wine present = %v", Running(), Version(), hasKey)
	}
	t.Logf("wine version %q", Version())
}
