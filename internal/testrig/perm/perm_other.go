//go:build !windows

package perm

import (
	"fmt"
	"os"
)

// ownerOnly: no group or other bits.
func ownerOnly(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("check permissions: %w", err)
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("check permissions of %s: mode %v: %w", path, m, ErrOpen)
	}
	return nil
}

func restrictDir(dir string) error { return os.Chmod(dir, 0o700) }
