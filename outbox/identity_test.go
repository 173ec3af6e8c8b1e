package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

func skipOnWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows refuses to delete or rename a file the agent holds open (no FILE_SHARE_DELETE), so the file cannot vanish under it")
	}
}

// outbox.db deleted while the agent runs: the next enqueue is refused
// (503 upstream) instead of a 202 into a file without a name, status says
// so, the file is written back with everything accepted, and records
// already accepted are still delivered.
func TestDeletedFileIsNoticedAndNothingIsLost(t *testing.T) {
	skipOnWindows(t)
	logs := &testrig.Buffer{}
	e := newEnv(t, func(o *outbox.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	a := enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	if err := os.Remove(e.path); err != nil {
		t.Fatal(err)
	}
	_, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "kasa:2", Payload: []byte(`{}`)})
	if !errors.Is(err, outbox.ErrFileGone) {
		t.Fatalf("enqueue after the file was deleted: %v, want ErrFileGone", err)
	}
	if st := stats(t, e.q); !strings.Contains(st.FileGone, "deleted") {
		t.Fatalf("status does not show it: %q", st.FileGone)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "OUTBOX FILE deleted") {
		t.Fatalf("no loud log line: %s", logs.String())
	}
	// Again: refused at once.
	if _, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "kasa:3", Payload: []byte(`{}`)}); !errors.Is(err, outbox.ErrFileGone) {
		t.Fatalf("second enqueue: %v", err)
	}
	// What got a 202 is back at the path for the next start.
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	items, err := q.List(outbox.Pending, 0)
	if err != nil || len(items) != 1 || items[0].ID != a.ID || string(items[0].Payload) != string(a.Payload) {
		t.Fatalf("after restart: %+v %v, want item %d", items, err, a.ID)
	}
	if st := stats(t, q); st.FileGone != "" {
		t.Fatalf("restarted queue still says %q", st.FileGone)
	}
}

// Replaced by another file: refused the same way; the accepted records are
// saved next to it, not over it.
func TestReplacedFileIsNoticed(t *testing.T) {
	skipOnWindows(t)
	e := newEnv(t, nil)
	a := enq(t, e.q, outbox.KindKasa, "kasa:1", 1, true)
	other := filepath.Join(t.TempDir(), "other.db")
	if err := os.WriteFile(other, []byte("someone else's file"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, e.path); err != nil {
		t.Fatal(err)
	}
	// Noticed by status too, before any enqueue.
	testrig.WaitFor(t, "status", 15*time.Second, func() bool { return strings.Contains(stats(t, e.q).FileGone, "replaced") })
	if _, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "kasa:2", Payload: []byte(`{}`)}); !errors.Is(err, outbox.ErrFileGone) {
		t.Fatalf("enqueue after the file was replaced: %v, want ErrFileGone", err)
	}
	if b, _ := os.ReadFile(e.path); string(b) != "someone else's file" {
		t.Fatal("the file now at the path was overwritten")
	}
	saved, _ := filepath.Glob(e.path + ".rescued-*")
	if len(saved) != 1 || !strings.Contains(stats(t, e.q).FileGone, saved[0]) {
		t.Fatalf("saved copies %v; status %q", saved, stats(t, e.q).FileGone)
	}
	// Delivery goes on from the open file.
	e.run(t)
	testrig.WaitFor(t, "delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
	if e.s.Calls()[0].Item.ID != a.ID {
		t.Fatal("wrong item sent")
	}
	q, err := outbox.Open(outbox.Options{Path: saved[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if st := stats(t, q); st.Pending != 1 {
		t.Fatalf("saved copy holds %d pending, want 1", st.Pending)
	}
}
