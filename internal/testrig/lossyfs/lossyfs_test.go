//go:build linux

package lossyfs

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// mountFS mounts a new FS in a temporary directory, or skips the test
// where FUSE cannot be mounted.
func mountFS(t *testing.T, opts Options) (*FS, string) {
	t.Helper()
	if err := Mountable(); err != nil {
		t.Skipf("FUSE cannot be mounted here (%v): run as root with /dev/fuse (Debian: apt-get install fuse3)", err)
	}
	dir := t.TempDir()
	f := New(opts)
	if err := f.Mount(dir); err != nil {
		t.Skipf("cannot mount FUSE here (%v): run as root with /dev/fuse (Debian: apt-get install fuse3)", err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return f, dir
}

// remount is what the tests do after a cut.
func remount(t *testing.T, f *FS, dir string) {
	t.Helper()
	if err := f.Unmount(); err != nil {
		t.Fatal(err)
	}
	if err := f.Mount(dir); err != nil {
		t.Fatal(err)
	}
}

func writeSync(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := fh.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

func syncDir(t *testing.T, dir string) {
	t.Helper()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		t.Fatalf("fsync dir: %v", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCutKeepsSyncedDropsUnsynced(t *testing.T) {
	f, dir := mountFS(t, Options{Tear: TearNone})
	p := filepath.Join(dir, "a")
	writeSync(t, p, []byte("synced Ödüyo ğüşiöç"), true)
	writeSync(t, filepath.Join(dir, "entry-synced"), []byte("x"), false)
	syncDir(t, dir)
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("UNSYNCED"), 0); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, p); got[:8] != "UNSYNCED" {
		t.Fatalf("before the cut a reader sees %q, want the unsynced write", got)
	}
	writeSync(t, filepath.Join(dir, "never-synced"), []byte("x"), false)
	rep := f.Cut()
	if _, err := fh.WriteAt([]byte("late"), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("write after the cut: %v, want EIO", err)
	}
	if err := fh.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync after the cut: %v, want EIO", err)
	}
	fh.Close()
	remount(t, f, dir)
	if got := readFile(t, p); got != "synced Ödüyo ğüşiöç" {
		t.Errorf("after the cut %q, want the synced content", got)
	}
	if got := readFile(t, filepath.Join(dir, "entry-synced")); got != "" {
		t.Errorf("created, directory fsynced, data never synced: %q, want empty", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "never-synced")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("created without a directory fsync: %v, want gone", err)
	}
	if rep.DroppedOps < 2 || rep.AppliedOps != 0 || rep.Files != 2 || rep.PendingRenames != 1 {
		t.Errorf("report %+v", rep)
	}
}

func TestCutAllKeepsEverything(t *testing.T) {
	f, dir := mountFS(t, Options{Tear: TearAll})
	p := filepath.Join(dir, "a")
	writeSync(t, p, []byte("one"), true)
	syncDir(t, dir)
	writeSync(t, p, []byte("two, longer"), false)
	f.Cut()
	remount(t, f, dir)
	if got := readFile(t, p); got != "two, longer" {
		t.Errorf("got %q", got)
	}
}

func TestRenameNeedsDirFsync(t *testing.T) {
	for _, dirSync := range []bool{false, true} {
		f, dir := mountFS(t, Options{Tear: TearNone})
		target := filepath.Join(dir, "license.json")
		writeSync(t, target, []byte("old"), true)
		tmp := filepath.Join(dir, ".license.json.tmp1")
		writeSync(t, tmp, []byte("new"), true)
		syncDir(t, dir) // both names durable: only the rename is in question
		if err := os.Rename(tmp, target); err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, target); got != "new" {
			t.Fatalf("before the cut %q", got)
		}
		if dirSync {
			syncDir(t, dir)
		}
		rep := f.Cut()
		remount(t, f, dir)
		got := readFile(t, target)
		_, tmpErr := os.Stat(tmp)
		if dirSync {
			if got != "new" || tmpErr == nil {
				t.Errorf("with dir fsync: target %q, tmp stat %v; want new, gone", got, tmpErr)
			}
		} else {
			if got != "old" || tmpErr != nil || rep.PendingRenames != 1 {
				t.Errorf("without dir fsync: target %q, tmp stat %v, pending renames %d; want old, still there, 1", got, tmpErr, rep.PendingRenames)
			}
		}
		f.Unmount()
	}
}

// Creating a file or a directory and unlinking are directory entries:
// durable only after an fsync of the directory, like a rename.
func TestEntriesNeedDirFsync(t *testing.T) {
	for _, dirSync := range []bool{false, true} {
		f, dir := mountFS(t, Options{Tear: TearNone})
		writeSync(t, filepath.Join(dir, "gone"), []byte("x"), true)
		syncDir(t, dir)
		if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeSync(t, filepath.Join(dir, "sub", "f"), []byte("in sub"), true)
		syncDir(t, filepath.Join(dir, "sub"))
		writeSync(t, filepath.Join(dir, "new"), []byte("fsynced data, unsynced name"), true)
		if dirSync {
			syncDir(t, dir)
		}
		rep := f.Cut()
		remount(t, f, dir)
		names, _ := f.Names("")
		if dirSync {
			if _, err := os.Stat(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("unlinked file after a dir fsync: %v", err)
			}
			if got := readFile(t, filepath.Join(dir, "sub", "f")); got != "in sub" {
				t.Errorf("sub/f = %q", got)
			}
			if got := readFile(t, filepath.Join(dir, "new")); got != "fsynced data, unsynced name" {
				t.Errorf("new = %q", got)
			}
			if len(names) != 2 || names[0] != "new" || names[1] != "sub" {
				t.Errorf("root holds %q", names)
			}
		} else {
			if got := readFile(t, filepath.Join(dir, "gone")); got != "x" {
				t.Errorf("unlinked without a dir fsync: %q, want it back", got)
			}
			if len(names) != 1 || names[0] != "gone" || rep.PendingRenames != 1 {
				t.Errorf("without a dir fsync the root holds %q (pending %d), want only the old file", names, rep.PendingRenames)
			}
		}
		f.Unmount()
	}
}

// A directory fsync that lies (the negative control of a program that never
// fsyncs its directory) leaves the entries as they were.
func TestLyingDirFsync(t *testing.T) {
	f, dir := mountFS(t, Options{Tear: TearNone, LyingDirFsync: 1})
	writeSync(t, filepath.Join(dir, "a"), []byte("x"), true)
	syncDir(t, dir)
	f.Cut()
	remount(t, f, dir)
	if names, _ := f.Names(""); len(names) != 0 {
		t.Fatalf("entries survived a lying dir fsync: %q", names)
	}
	if f.Stats().LiedFsyncs != 1 {
		t.Fatalf("stats %+v", f.Stats())
	}
}

// TestTornWritesAreSectorMixes: whatever the model, every sector of the
// file after a cut holds one of the versions written to it, and synced data
// below the unsynced region never changes.
func TestTornWritesAreSectorMixes(t *testing.T) {
	const sector, sectors = 512, 16
	for _, model := range []Tear{TearPrefix, TearSubset, TearRandom} {
		t.Run(model.String(), func(t *testing.T) {
			f, dir := mountFS(t, Options{Tear: model, Rand: rand.New(rand.NewPCG(1, uint64(model)))})
			p := filepath.Join(dir, "db")
			base := bytes.Repeat([]byte{'0'}, sector*sectors)
			writeSync(t, p, base, true)
			syncDir(t, dir)
			torn := 0
			for round := 0; round < 20; round++ {
				fh, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				// Versions 'a'.. over the upper half, several writes, each
				// covering several sectors, unaligned.
				for v := byte('a'); v < 'e'; v++ {
					off := int64(sector*sectors/2 + int(v-'a')*100)
					if _, err := fh.WriteAt(bytes.Repeat([]byte{v}, 3*sector), off); err != nil {
						t.Fatal(err)
					}
				}
				fh.Close()
				rep := f.Cut()
				torn += rep.TornOps
				remount(t, f, dir)
				got, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got[:sector*sectors/2], base[:sector*sectors/2]) {
					t.Fatalf("round %d: synced lower half changed", round)
				}
				for i, b := range got {
					if b != '0' && (b < 'a' || b >= 'e') {
						t.Fatalf("round %d: byte %d = %q, a value never written", round, i, b)
					}
				}
				// A piece of a write starts at the write's offset or a
				// sector boundary: inside a sector the version changes at
				// most at write offsets.
				for i := 1; i < len(got); i++ {
					if got[i] != got[i-1] && i%sector != 0 && (i-sector*sectors/2)%100 != 0 && (i-sector*sectors/2-3*sector)%100 != 0 {
						t.Fatalf("round %d: version changes at byte %d, inside a sector and not at a write's edge", round, i)
					}
				}
				writeSync(t, p, base, true)
			}
			if model != TearRandom && torn == 0 {
				t.Errorf("no torn write in 20 cuts of model %v", model)
			}
			t.Logf("torn writes over 20 cuts: %d", torn)
		})
	}
}

func TestFlockIsEnforced(t *testing.T) {
	_, dir := mountFS(t, Options{})
	p := filepath.Join(dir, "locked")
	a, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := syscall.Flock(int(a.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("first flock: %v", err)
	}
	if err := syscall.Flock(int(b.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
		t.Fatalf("second flock: %v, want EWOULDBLOCK", err)
	}
}

// TestMain runs the child half of the tests that must not fault on the
// mount from the serving process: a page fault on a FUSE mmap served by the
// same Go process deadlocks the garbage collector.
func TestMain(m *testing.M) {
	if p := os.Getenv("LOSSYFS_MMAP_CHILD"); p != "" {
		if err := mmapChild(p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func mmapChild(p string) error {
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer fh.Close()
	m, err := syscall.Mmap(int(fh.Fd()), 0, 8192, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return err
	}
	defer syscall.Munmap(m)
	if m[4096] != 0 { // faults the page in before the write
		return fmt.Errorf("page not zero")
	}
	if _, err := fh.WriteAt([]byte("Kadıköy"), 4096); err != nil {
		return err
	}
	if got := string(m[4096 : 4096+len("Kadıköy")]); got != "Kadıköy" {
		return fmt.Errorf("mmap sees %q after pwrite", got)
	}
	return nil
}

func TestMmapSeesWrites(t *testing.T) {
	_, dir := mountFS(t, Options{})
	p := filepath.Join(dir, "m")
	writeSync(t, p, make([]byte, 8192), true)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LOSSYFS_MMAP_CHILD="+p)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestMountTwiceFails(t *testing.T) {
	f, dir := mountFS(t, Options{})
	if err := f.Mount(dir); !errors.Is(err, ErrMounted) {
		t.Errorf("second mount: %v, want ErrMounted", err)
	}
}

// TestFsyncPathFailsAfterAllowed: the named file's fsyncs succeed as
// often as allowed, then answer EIO while its writes still land and read
// back; other files' fsyncs are untouched; clearing the failure ends it.
func TestFsyncPathFailsAfterAllowed(t *testing.T) {
	f, dir := mountFS(t, Options{Tear: TearNone})
	p, other := filepath.Join(dir, "db"), filepath.Join(dir, "other")
	writeSync(t, p, []byte("one"), true)
	writeSync(t, other, []byte("x"), true)
	if err := f.SetFailure(Failure{FsyncPath: "db", FsyncsAllowed: 1}); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var errs []error
	for _, b := range []string{"two", "six"} {
		if _, err := fh.WriteAt([]byte(b), 0); err != nil {
			t.Fatalf("write %s: %v", b, err)
		}
		errs = append(errs, fh.Sync())
	}
	if errs[0] != nil || !errors.Is(errs[1], syscall.EIO) {
		t.Fatalf("fsyncs: %v, want the first to succeed and the second to fail with EIO", errs)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "six" {
		t.Fatalf("after the failed fsync the file reads %q (%v), want the write that was not synced", got, err)
	}
	writeSync(t, other, []byte("y"), true) // another file's fsync still succeeds
	if err := f.SetFailure(Failure{}); err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatalf("fsync after the failure was cleared: %v", err)
	}
	if st := f.Stats(); st.FailedFsyncs != 1 {
		t.Fatalf("FailedFsyncs = %d, want 1", st.FailedFsyncs)
	}
	if err := f.SetFailure(Failure{FsyncPath: "missing"}); err == nil {
		t.Fatal("a failure naming no file was accepted")
	}
}
