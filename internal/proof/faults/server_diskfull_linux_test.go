package faults_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
	"github.com/tposagent/tposagent/outbox"
)

// TestServerFaultMatrixCommitFailsAfterDelivery is the matrix row "the
// commit fails after a delivery": Ödüyo is up and takes every create,
// but the disk is full (writes answer ENOSPC), so the commit that records
// a delivery fails. The record is not created again while that lasts
// (its key stays busy, nothing new is sent), status says "delivery
// results cannot be recorded", and when space returns every record has
// been created exactly once. The real outbox file is on the lossy FUSE
// filesystem (served by a child process), the real Ödüyo client and the
// agent's Sender talk to the fake Ödüyo server; real time.
func TestServerFaultMatrixCommitFailsAfterDelivery(t *testing.T) {
	fsys, dir := lossyfs.MountForTest(t)
	srv := oduyotest.NewServer()
	t.Cleanup(srv.Close)
	client, err := oduyo.New(oduyo.Config{BaseURL: srv.URL(), APIKey: srv.APIKey, Username: srv.Username, Password: srv.Password, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(dir, "outbox.db"), Concurrency: 4, RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() }) // before the unmount
	const n = 40
	for i := range n {
		col, key, err := records.NormalizeSpecialCode([]byte(fmt.Sprintf(`{"integration_id":"DF-%02d","code":"Ç%02d"}`, i, i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: key, Payload: col}); err != nil {
			t.Fatal(err)
		}
	}
	// The disk is full before the first delivery is recorded.
	if err := fsys.SetFailure(lossyfs.Failure{Writes: true, Errno: syscall.ENOSPC}); err != nil {
		t.Fatal(err)
	}
	sender := agent.NewSender(client)
	sender.SetBootSequence(n) // enqueued by this process: the first attempt is a create
	stop := testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return q.Run(ctx, sender) })
	testrig.WaitFor(t, "a delivery result that cannot be recorded", 15*time.Second, func() bool {
		st, err := q.Stats()
		return err == nil && st.Unrecorded > 0
	})
	failed := func() int { st, _ := fsys.Stats(); return st.FailedWrites }
	// The sends already under way when the first commit failed end
	// meanwhile (their results are held too).
	f0 := failed()
	testrig.WaitFor(t, "two more failed commits", 20*time.Second, func() bool { return failed() >= f0+2 })
	created := len(srv.Delivered())
	f0 = failed()
	testrig.WaitFor(t, "five more failed commits", 30*time.Second, func() bool { return failed() >= f0+5 })
	st, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.LastError, "delivery results cannot be recorded: ") || !strings.Contains(st.LastError, "no space left on device") {
		t.Fatalf("status on a full disk: last_error %q", st.LastError)
	}
	// The sends already under way when the first commit failed end; no
	// send starts after it, and none is repeated.
	if got := len(srv.Delivered()); got != created {
		t.Fatalf("creates while results cannot be recorded: %d, then %d (want no send while it lasts)", created, got)
	}
	seen := map[string]bool{}
	for _, d := range srv.Delivered() {
		if seen[d.IntegrationID] {
			t.Fatalf("%s created twice while results cannot be recorded", d.IntegrationID)
		}
		seen[d.IntegrationID] = true
	}
	if err := fsys.SetFailure(lossyfs.Failure{}); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "the queue to drain once space returns", 30*time.Second, func() bool {
		st, err := q.Stats()
		return err == nil && st.Pending == 0
	})
	stop()
	per := map[string]int{}
	for _, d := range srv.Delivered() {
		per[d.IntegrationID]++
	}
	dups := 0
	for i := range n {
		id := fmt.Sprintf("DF-%02d", i)
		if per[id] != 1 {
			t.Errorf("%s created %d times, want once", id, per[id])
		}
		if per[id] > 1 {
			dups += per[id] - 1
		}
	}
	t.Logf("RESULT commit-fails-after-delivery records=%d creates=%d duplicates=%d creates_while_disk_full=%d failed_writes=%d", n, len(srv.Delivered()), dups, created, failed())
}
