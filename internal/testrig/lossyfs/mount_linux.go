//go:build linux

package lossyfs

import (
	"os"
	"path/filepath"
	"testing"
)

// MountForTest mounts a lossy filesystem for t, served by a child process
// (see Remote for why), at a new directory it returns; or it skips t
// saying why it cannot. The cleanup unmounts it.
func MountForTest(t testing.TB) (*Remote, string) {
	t.Helper()
	if err := Mountable(); err != nil {
		t.Skipf("a failing disk needs the lossy FUSE filesystem, which cannot be mounted here: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	fsys, err := StartRemote(dir)
	if err != nil {
		t.Skipf("cannot mount the lossy FUSE filesystem: %v", err)
	}
	t.Cleanup(func() {
		if err := fsys.Close(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return fsys, dir
}
