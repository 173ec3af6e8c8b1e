package perm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tposagent/tposagent/internal/testrig/wine"
)

// The check can fail: a file open to others is caught, a closed one passes.
func TestOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	closed, open := filepath.Join(dir, "closed"), filepath.Join(dir, "open")
	for _, p := range []string{closed, open} {
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := restrict(closed); err != nil {
		t.Fatal(err)
	}
	if err := widen(open); err != nil {
		t.Fatal(err)
	}
	if err := OwnerOnly(open); !errors.Is(err, ErrOpen) {
		t.Errorf("OwnerOnly(open file) = %v, want ErrOpen", err)
	}
	if err := OwnerOnly(closed); err != nil {
		wine.Skip(t, wine.ACLsDiscarded)
		t.Errorf("OwnerOnly(closed file) = %v, want nil", err)
	}
	if err := OwnerOnly(filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrOpen) {
		t.Errorf("OwnerOnly(missing) = %v, want a stat error", err)
	}
}
