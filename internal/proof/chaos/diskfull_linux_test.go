package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/config"
	"golang.org/x/sys/unix"
)

// TestDiskFull puts the data dir on a 4 MiB tmpfs, lets a filler file eat
// the space while records come in, and frees it again.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("disk full: mounting a tmpfs needs root; skipped")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tposagent-chaos", mnt, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Skipf("disk full: cannot mount a tmpfs on %s (%v); skipped", mnt, err)
	}
	// Registered before the fixture, so it runs after the agent is gone
	// and the fixture has scanned the files.
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	// A fixed port, as on a real till: on a disk with no byte free the
	// agent cannot write api.addr, whether or not its log has just taken
	// the page the old api.addr gave back.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	f := newFixture(t, filepath.Join(mnt, "data"), func(c *config.Config) { c.API.Listen = listen })
	f.oduyo.SetDown(true)
	f.mustStart()
	ctx := context.Background()
	hc := &http.Client{Timeout: 10 * time.Second}

	// Leave 160 KiB: about ten records of 16 KB.
	filler := filepath.Join(mnt, "filler")
	var fs unix.Statfs_t
	if err := unix.Statfs(mnt, &fs); err != nil {
		t.Fatal(err)
	}
	free := int64(fs.Bavail) * int64(fs.Bsize)
	if err := os.WriteFile(filler, make([]byte, max(free-160<<10, 0)), 0o600); err != nil {
		t.Fatalf("write the filler: %v", err)
	}

	accepted := map[string]map[string]any{}
	var refusal string
	refused := 0
	for i := 0; i < 200 && refused < 5; i++ {
		col := bigCode(fmt.Sprintf("disk-%04d", i))
		code, body, err := post(ctx, hc, f.api(), "/v1/special-codes", col)
		switch {
		case err != nil:
			t.Fatalf("enqueue %d: %v (did the agent die?)\n%s", i, err, f.output())
		case code == http.StatusAccepted:
			accepted[col["integration_id"].(string)] = col
		case code == http.StatusServiceUnavailable:
			refused++
			refusal = body
		default:
			t.Fatalf("enqueue %d on a full disk: %d %s", i, code, body)
		}
	}
	f.record("503 body", []byte(refusal))
	if refused == 0 {
		t.Fatalf("%d records went into a full 4 MiB disk without a 503", len(accepted))
	}
	if !strings.Contains(refusal, "no space left") || !strings.Contains(refusal, "nothing was stored") {
		t.Fatalf("503 body %q does not say the disk is full and nothing was stored", refusal)
	}
	t.Logf("disk full after %d records: %s", len(accepted), strings.TrimSpace(refusal))
	st, err := f.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Outbox.Pending != len(accepted) {
		t.Fatalf("on a full disk: %d pending, want the %d accepted", st.Outbox.Pending, len(accepted))
	}
	// Status says that records cannot be stored, how often and since when.
	if e := st.Outbox.Enqueue; e.Failures != uint64(refused) || e.FailingSince == nil || !strings.Contains(e.LastError, "no space left") {
		t.Fatalf("status on a full disk: enqueue %+v, want %d failures, since when, and the error", e, refused)
	}
	if m, err := f.cli("status"); err != nil || !strings.Contains(m, "FAILING since") {
		t.Errorf("tposagent status on a full disk does not say enqueues fail (%v):\n%s", err, m)
	}

	// Take the last bytes too, then kill -9 and restart on a disk with
	// no byte free.
	topOff(t, filler)
	f.kill()
	if err := f.start(); err != nil {
		t.Fatalf("restart on a full disk: %v", err)
	}
	if st, err := f.status(); err != nil || st.Outbox.Pending != len(accepted) {
		t.Fatalf("after a restart on a full disk: %d pending (%v), want the %d accepted", st.Outbox.Pending, err, len(accepted))
	}

	// Space comes back: the same agent accepts again, and everything drains.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := 0
	for i := range 5 {
		col := bigCode(fmt.Sprintf("after-%02d", i))
		code, body, err := post(ctx, hc, f.api(), "/v1/special-codes", col)
		if err != nil || code != http.StatusAccepted {
			t.Fatalf("enqueue after space came back: %d %s %v, want 202\n%s", code, body, err, f.output())
		}
		accepted[col["integration_id"].(string)] = col
		after++
	}
	f.oduyo.SetDown(false)
	f.waitDrained(60 * time.Second)
	lost := f.checkDelivered(accepted)
	f.stop()
	if err := checkBolt(filepath.Join(f.dataDir, "outbox.db")); err != nil {
		t.Fatalf("outbox.db after the disk-full episode: %v", err)
	}
	t.Logf("RESULT disk-full accepted=%d refused_with_503=%d lost=%d accepted_after_space_returned=%d", len(accepted)-after, refused, lost, after)
}

// topOff appends to the filler until the file system has no byte left.
func topOff(t *testing.T, filler string) {
	t.Helper()
	fh, err := os.OpenFile(filler, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 4096)
	for n := len(buf); n > 0; n /= 2 {
		for {
			if _, err := fh.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}
