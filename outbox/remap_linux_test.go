package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// TestLostMappingIsMended: bbolt fails to map the file as it grows (here
// mmap refuses the flags; on a till, out of address space or, on Windows,
// "CreateFileMapping: Too many open files") and leaves the file unmapped.
// The queue reopens it and runs the failed commit again: every caller
// gets its record accepted, nothing is lost, and the records are sent
// once each. Before the fix the queue stayed unmapped for good: every
// later commit and dispatch failed and nothing was sent again.
func TestLostMappingIsMended(t *testing.T) {
	logs := &testrig.Buffer{}
	e := newEnv(t, func(o *outbox.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	enq(t, e.q, outbox.KindKasa, "before", 1, false)
	// MAP_SHARED_VALIDATE with MAP_SYNC, which a file off a DAX device
	// does not support: the next mmap fails with EOPNOTSUPP.
	e.q.BreakMappingForTest(unix.MAP_PRIVATE | unix.MAP_SYNC)

	// Enough records at once to grow the file past its first mapping.
	const n = 64
	payload := json.RawMessage(`"` + strings.Repeat("ğ", 8000) + `"`)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("k", i), Payload: payload})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("enqueue %d: %v", i, err)
		}
	}
	if !strings.Contains(logs.String(), "mmap allocate error") || !strings.Contains(logs.String(), "opened again after it lost its memory mapping") {
		t.Fatalf("the lost mapping was not hit or not mended; logs:\n%s", logs.String())
	}
	if st := stats(t, e.q); st.Pending != n+1 {
		t.Fatalf("pending %d after the mended commit, want %d", st.Pending, n+1)
	}

	stop := e.run(t)
	defer stop()
	testrig.WaitFor(t, "every record delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == n+1 })
	sent := map[string]int{}
	for _, c := range e.s.Calls() {
		sent[c.Item.Key]++
	}
	if len(sent) != n+1 {
		t.Fatalf("%d keys sent, want %d", len(sent), n+1)
	}
	for k, c := range sent {
		if c != 1 {
			t.Errorf("%s sent %d times", k, c)
		}
	}
}
