package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
	"github.com/tposagent/tposagent/outbox/outboxtest"
)

// queueBehindCLI opens a real outbox in a new directory, serves it
// through the local API on loopback, and writes a config that points the
// CLI at it; it returns the queue and the config's path.
func queueBehindCLI(t *testing.T) (*outbox.Queue, string) {
	t.Helper()
	dir := t.TempDir()
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(dir, "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	const tok = "0123456789abcdef0123"
	srv := httptest.NewServer(localapi.NewHandler(localapi.Config{
		Token: tok, Queue: agent.LocalQueue(q),
		Status:  func() localapi.Status { return localapi.Status{Version: "test", License: tposl.Unknown("x")} },
		License: func() tposl.License { return tposl.Unknown("x") },
	}))
	t.Cleanup(srv.Close)
	c := config.Default()
	c.DataDir = dir
	c.API.Listen = strings.TrimPrefix(srv.URL, "http://")
	c.API.Token = tok
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, config.Encode(&c), 0o600); err != nil {
		t.Fatal(err)
	}
	return q, path
}

// outbox retry of a dead kasa update after a newer update of the same
// card was delivered is refused (exit 1, naming the newer delivery);
// --force sends it.
func TestOutboxRetryStaleNeedsForce(t *testing.T) {
	q, path := queueBehindCLI(t)

	lq := agent.LocalQueue(q)
	enqueue := func(col string) uint64 {
		acc, err := lq.Enqueue(context.Background(), localapi.Record{Kind: localapi.KindKasa, Key: "kasa:id:5", Column: json.RawMessage(col)})
		if err != nil {
			t.Fatal(err)
		}
		return acc.ID
	}
	old := enqueue(`{"id":5,"balance":"1.00"}`)
	s := outboxtest.NewSender()
	s.ScriptID(old, outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 400"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, s) }()
	defer func() { cancel(); <-done }()
	wait := func(cond func(outbox.Stats) bool) {
		t.Helper()
		testrig.WaitFor(t, "the queue", 10*time.Second, func() bool { st, err := q.Stats(); return err == nil && cond(st) })
	}
	wait(func(st outbox.Stats) bool { return st.Dead == 1 })
	newer := enqueue(`{"id":5,"balance":"2.00"}`)
	wait(func(st outbox.Stats) bool { return st.Delivered == 1 })

	id := strconv.FormatUint(old, 10)
	code, _, errOut := runCLI(t, "outbox", "retry", id, "--config", path)
	if code != exitError || !strings.Contains(errOut, "item "+strconv.FormatUint(newer, 10)) || !strings.Contains(errOut, "force") {
		t.Fatalf("retry: exit %d %q", code, errOut)
	}
	code, out, errOut := runCLI(t, "outbox", "retry", id, "--force", "--config", path)
	if code != 0 || !strings.Contains(out, "retry done") {
		t.Fatalf("retry --force: exit %d %q %q", code, out, errOut)
	}
	wait(func(st outbox.Stats) bool { return st.Delivered == 2 && st.Dead == 0 })
	if code, _, _ := runCLI(t, "outbox", "retry", "x7", "--config", path); code != exitUsage {
		t.Errorf("bad id: exit %d", code)
	}
}
