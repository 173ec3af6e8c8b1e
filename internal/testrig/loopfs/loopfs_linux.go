//go:build linux

// Package loopfs gives tests a real filesystem they can freeze: an ext4
// image on a loop device, mounted, with fsfreeze (the frozen-disk proofs
// of the outbox and of the agent).
package loopfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Mount makes a 64 MiB ext4 filesystem on a loop device and mounts it,
// or skips the test saying why it cannot (not root, a tool missing, no
// loop device). freeze and thaw run fsfreeze on it; the cleanup thaws,
// unmounts and detaches it (registered now: it runs after whatever the
// test registers later, e.g. an agent that uses the filesystem).
func Mount(t testing.TB) (dir string, freeze, thaw func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a frozen disk needs root (loop device, mount, fsfreeze); skipped")
	}
	for _, bin := range []string{"losetup", "mkfs.ext4", "fsfreeze", "mount", "umount"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("a frozen disk needs %s, not in PATH; skipped", bin)
		}
	}
	run := func(name string, args ...string) (string, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	base := t.TempDir()
	img := filepath.Join(base, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := run("mkfs.ext4", "-q", "-F", img); err != nil {
		t.Skipf("mkfs.ext4 failed (%v: %s); skipped", err, out)
	}
	dev, err := run("losetup", "--find", "--show", img)
	if err != nil {
		t.Skipf("no loop device available here (losetup: %v: %s); skipped", err, dev)
	}
	dir = filepath.Join(base, "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := run("mount", dev, dir); err != nil {
		_, _ = run("losetup", "-d", dev)
		t.Skipf("cannot mount the loop device %s (%v: %s); skipped", dev, err, out)
	}
	frozen := false
	thaw = func() {
		if frozen {
			if out, err := run("fsfreeze", "-u", dir); err != nil {
				t.Errorf("fsfreeze -u: %v: %s", err, out)
			}
			frozen = false
		}
	}
	freeze = func() {
		if out, err := run("fsfreeze", "-f", dir); err != nil {
			t.Fatalf("fsfreeze -f: %v: %s", err, out)
		}
		frozen = true
	}
	t.Cleanup(func() {
		thaw()
		if out, err := run("umount", dir); err != nil {
			t.Errorf("umount: %v: %s", err, out)
			_, _ = run("umount", "-l", dir)
		}
		if out, err := run("losetup", "-d", dev); err != nil {
			t.Errorf("losetup -d: %v: %s", err, out)
		}
	})
	return dir, freeze, thaw
}
