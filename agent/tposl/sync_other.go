//go:build !windows

package tposl

import "os"

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// replaceFile renames tmp over dst atomically.
func replaceFile(tmp, dst string) error { return os.Rename(tmp, dst) }
