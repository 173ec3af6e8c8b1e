package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// fillAndDrain makes a file worth compacting and lets the queue drain it.
func fillAndDrain(t *testing.T, e *env) {
	t.Helper()
	payload := json.RawMessage(`"` + strings.Repeat("ş", 1000) + `"`)
	for i := range 1200 {
		if _, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("k", i%40), Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	e.run(t)
}

// Compaction on Windows closes the file to rename over it: a reopen that
// fails (an antivirus holding the file for a moment) is retried, and the
// queue goes on.
func TestCompactionReopenIsRetried(t *testing.T) {
	undo := outbox.CompactLikeWindowsForTest(2)
	defer undo()
	logs := &testrig.Buffer{}
	e := newEnv(t, func(o *outbox.Options) {
		o.CompactMinSize = 1 << 20
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	fillAndDrain(t, e)
	testrig.WaitFor(t, "compaction", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.Compactions == 1 })
	if !strings.Contains(logs.String(), "reopened after compaction") || !strings.Contains(logs.String(), "attempts=3") {
		t.Fatalf("the retried reopen is not reported:\n%s", logs.String())
	}
	enq(t, e.q, outbox.KindKasa, "after", 1, false)
	testrig.WaitFor(t, "delivered after compaction", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1201 })
}

// A reopen that keeps failing is reported (log, status), records are
// refused with a clear error instead of a crash or a hang, and the queue
// recovers by itself once the file can be opened again.
func TestCompactionReopenFailureIsReportedAndRecovers(t *testing.T) {
	undo := outbox.CompactLikeWindowsForTest(1 << 20)
	defer undo()
	logs := &testrig.Buffer{}
	e := newEnv(t, func(o *outbox.Options) {
		o.CompactMinSize = 1 << 20
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	fillAndDrain(t, e)
	testrig.WaitFor(t, "reported", 20*time.Second, func() bool {
		return strings.Contains(stats(t, e.q).LastError, "cannot open the outbox file again")
	})
	if !strings.Contains(logs.String(), "OUTBOX FILE CLOSED") {
		t.Fatalf("no loud log line:\n%s", logs.String())
	}
	_, err := e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "k", Payload: []byte(`{}`)})
	if err == nil || !errors.Is(err, outbox.ErrClosed) || !strings.Contains(err.Error(), "cannot open the outbox file again") {
		t.Fatalf("enqueue while the file is closed: %v", err)
	}
	// The file is closed, but not unlocked: a second agent cannot take it
	// while the first one waits to reopen it.
	second := e.opts
	second.OpenTimeout = 100 * time.Millisecond
	if q2, err := outbox.Open(second); !errors.Is(err, outbox.ErrLocked) {
		if err == nil {
			q2.Close()
		}
		t.Fatalf("a second open while compaction has the file closed: %v, want ErrLocked", err)
	}
	outbox.FailReopensForTest(0)
	// It opens again by itself, with no request to wake it.
	testrig.WaitFor(t, "reopened without a request", 8*time.Second, func() bool {
		return !strings.Contains(stats(t, e.q).LastError, "cannot open the outbox file again")
	})
	var it outbox.Item
	defer func() {
		if t.Failed() {
			t.Logf("enqueue: %v; logs:\n%s", err, logs.String())
		}
	}()
	testrig.WaitFor(t, "recovered", 20*time.Second, func() bool {
		it, err = e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: "after", Payload: []byte(`{"x":1}`)})
		return err == nil
	})
	testrig.WaitFor(t, "delivered after recovery", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1201 })
	if st := stats(t, e.q); st.Pending != 0 || !strings.Contains(string(it.Payload), "x") {
		t.Fatalf("after recovery: %+v", st)
	}
}
