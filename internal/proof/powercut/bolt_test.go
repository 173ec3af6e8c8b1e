//go:build linux

package powercut

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tposagent/tposagent/internal/atomicfile"
	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
)

// boltChildEnv makes the test binary a bbolt writer on the mount (a child
// process: a page fault on a FUSE mmap served by the same Go process
// deadlocks its garbage collector).
const boltChildEnv = "POWERCUT_BOLT_CHILD"

const boltWindow = 20 // transaction n puts key n and deletes key n-boltWindow

// boltValue is the value of key n: its size and bytes depend on n, so a
// torn or stale page shows.
func boltValue(n uint64) []byte {
	v := make([]byte, 8+int(n*7919%6000))
	binary.BigEndian.PutUint64(v, n)
	for i := 8; i < len(v); i++ {
		v[i] = byte(n + uint64(i))
	}
	return v
}

func boltKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// boltChild commits transactions forever, printing "ok N" after each
// commit returned.
func boltChild() int {
	db, err := bolt.Open(os.Getenv(boltChildEnv), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	// bbolt does not fsync the directory of a file it creates: the name
	// would not survive a cut. A program using bbolt must (the outbox does).
	if err := atomicfile.SyncDir(filepath.Dir(os.Getenv(boltChildEnv))); err != nil {
		fmt.Fprintln(os.Stderr, "fsync dir:", err)
		return 1
	}
	var next uint64
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("k"))
		if err != nil {
			return err
		}
		if k, _ := b.Cursor().Last(); k != nil {
			next = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "init:", err)
		return 1
	}
	w := bufio.NewWriter(os.Stdout)
	for n := next + 1; ; n++ {
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("k"))
			if err := b.Put(boltKey(n), boltValue(n)); err != nil {
				return err
			}
			if n > boltWindow {
				return b.Delete(boltKey(n - boltWindow))
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "commit:", err)
			return 1
		}
		fmt.Fprintf(w, "ok %d\n", n)
		w.Flush()
	}
}

// checkBolt checks a copy of the surviving file: it opens, passes Check,
// and holds exactly the keys of one transaction at or after the last one
// acknowledged.
func checkBolt(data []byte, acked uint64, dir string) error {
	if len(data) == 0 {
		// Created, but cut before bbolt's first sync.
		if acked > 0 {
			return fmt.Errorf("the file is empty, but transaction %d was acknowledged", acked)
		}
		return nil
	}
	p := filepath.Join(dir, "check.db")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("check: %w", err)
		}
		b := tx.Bucket([]byte("k"))
		if b == nil {
			if acked > 0 {
				return fmt.Errorf("bucket gone, %d transactions were acknowledged", acked)
			}
			return nil
		}
		var last uint64
		if k, _ := b.Cursor().Last(); k != nil {
			last = binary.BigEndian.Uint64(k)
		}
		if last < acked {
			return fmt.Errorf("newest key %d, but transaction %d was acknowledged", last, acked)
		}
		want := last - min(last, boltWindow-1)
		if want == 0 {
			want = 1
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			n := binary.BigEndian.Uint64(k)
			if n != want {
				return fmt.Errorf("key %d where %d was expected (newest %d)", n, want, last)
			}
			if !bytes.Equal(v, boltValue(n)) {
				return fmt.Errorf("value of key %d is wrong", n)
			}
			want++
		}
		return nil
	})
}

// TestBoltPowerCuts is the bare bbolt under the same cuts: a child process
// commits small transactions, the power is cut at a random moment, and the
// surviving file must hold a transaction no older than the last one whose
// commit returned.
func TestBoltPowerCuts(t *testing.T) {
	cuts := envInt(t, "TPOSAGENT_POWERCUTS", 40)
	sd := seed(t)
	t.Logf("seed=%d cuts=%d", sd, cuts)
	if failure := runBoltCuts(t, cuts, sd, lossyfs.Options{Rand: rand.New(rand.NewPCG(sd, 5))}); failure != "" {
		t.Fatal(failure)
	}
}

// TestBoltPowerCutsCatchLyingDisk is the negative control of
// TestBoltPowerCuts: a disk that ignores half the fsyncs must be caught.
func TestBoltPowerCutsCatchLyingDisk(t *testing.T) {
	sd := seed(t)
	t.Logf("seed=%d", sd)
	failure := runBoltCuts(t, 20, sd, lossyfs.Options{Rand: rand.New(rand.NewPCG(sd, 5)), Tear: lossyfs.TearNone, LyingFsync: 0.5})
	if failure == "" {
		t.Fatal("a disk that ignores half the fsyncs lost nothing the test could see")
	}
	t.Logf("caught, as it must be: %s", failure)
}

// runBoltCuts returns the first broken promise, or "".
func runBoltCuts(t *testing.T, cuts int, sd uint64, fsOpts lossyfs.Options) string {
	control := fsOpts.LyingFsync > 0
	rnd := rand.New(rand.NewPCG(sd, 4))
	fsys := lossyfs.New(fsOpts)
	dir := filepath.Join(t.TempDir(), "mnt")
	os.Mkdir(dir, 0o700)
	mountOrSkip(t, fsys, dir)
	work := t.TempDir()
	var acked atomic.Uint64
	var torn, unsynced int
	for cut := 1; cut <= cuts; cut++ {
		c := startChild(t, boltChildEnv+"="+filepath.Join(dir, "bolt.db"), func(line string) bool {
			var n uint64
			if _, err := fmt.Sscanf(line, "ok %d", &n); err == nil {
				acked.Store(n)
				return true
			}
			return false
		})
		rep := c.cut(t, cut, rnd, 150, fsys)
		torn += rep.TornOps
		unsynced += rep.UnsyncedOps
		if err := fsys.Unmount(); err != nil {
			t.Fatal(err)
		}
		data, err := fsys.ReadFile("bolt.db")
		if err == nil {
			if err := checkBolt(data, acked.Load(), work); err != nil {
				kept := "(not kept: a negative control)"
				if !control {
					f, _ := os.CreateTemp("", "powercut-bolt-*.db")
					f.Write(data)
					f.Close()
					kept = f.Name()
				}
				return fmt.Sprintf("cut %d (seed %d): %v (acknowledged %d; file kept at %s)", cut, sd, err, acked.Load(), kept)
			}
		} else if acked.Load() > 0 {
			return fmt.Sprintf("cut %d: the file is gone: %v", cut, err)
		}
		if err := fsys.Mount(dir); err != nil {
			t.Fatal(err)
		}
	}
	if acked.Load() < uint64(cuts/2) {
		t.Errorf("only %d transactions over %d cuts: the writer barely ran", acked.Load(), cuts)
	}
	t.Logf("RESULT bolt cuts=%d transactions=%s torn_writes=%d unsynced_ops=%d", cuts, strconv.FormatUint(acked.Load(), 10), torn, unsynced)
	return ""
}
