//go:build !windows

package perm

import "os"

func restrict(path string) error { return os.Chmod(path, 0o600) }
func widen(path string) error    { return os.Chmod(path, 0o644) }
