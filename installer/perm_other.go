//go:build !windows

package installer

import "os"

const isWindows = false

// securePath makes path readable only by its owner: 0600 for files, 0700
// for directories.
func securePath(path string, dir bool) error {
	mode := os.FileMode(0o600)
	if dir {
		mode = 0o700
	}
	return os.Chmod(path, mode)
}

var osStat = os.Stat

// securePathMode sets an explicit mode (a unit file is world-readable).
func securePathMode(path string, mode os.FileMode) error { return os.Chmod(path, mode) }
