package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/internal/i18n"
	"github.com/tposagent/tposagent/outbox"
)

// outbox list pages through the agent's answers (at most 500 each): all
// of them with --limit 0, as a table or one JSON array; the first 100 by
// default, saying that more follow.
func TestOutboxListPagesThrough(t *testing.T) {
	q, path := queueBehindCLI(t)
	const n = 1234
	for i := range n {
		if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprint("special_code:", i),
			Payload: json.RawMessage(fmt.Sprintf(`{"integration_id":"%d","code":"C"}`, i))}); err != nil {
			t.Fatal(err)
		}
	}
	rows := func(out string) int { return strings.Count(out, "special_code:") }

	code, out, errOut := runCLI(t, "outbox", "list", "--limit", "0", "--config", path)
	if code != 0 || rows(out) != n || strings.Count(out, "ID  ") != 1 {
		t.Fatalf("list --limit 0: exit %d, %d rows (want %d, one header) %q", code, rows(out), n, errOut)
	}
	code, out, _ = runCLI(t, "outbox", "list", "--config", path)
	if code != 0 || rows(out) != 100 || !strings.Contains(out, "--limit 0 lists them all") {
		t.Fatalf("list: exit %d, %d rows:\n%s", code, rows(out), out)
	}
	code, out, _ = runCLI(t, "outbox", "list", "--limit", "0", "--json", "--config", path)
	var items []localapi.ItemView
	if err := json.Unmarshal([]byte(out), &items); code != 0 || err != nil || len(items) != n || items[n-1].Key != fmt.Sprint("special_code:", n-1) {
		t.Fatalf("list --json: exit %d, %d items, %v", code, len(items), err)
	}
	code, out, _ = runCLI(t, "outbox", "dead", "--json", "--config", path)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("dead --json: exit %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "outbox", "list", "--limit", "-1", "--config", path); code != exitUsage {
		t.Fatalf("--limit -1: exit %d", code)
	}
}

// tposagent status shows the outbox's bookkeeping per kind, in English
// and Turkish.
func TestStatusShowsTheBookkeeping(t *testing.T) {
	s := localapi.Status{License: tposl.Unknown("x"), Outbox: localapi.Outbox{Bookkeeping: &localapi.Bookkeeping{
		Aliases: localapi.BookCount{Count: 12, Bytes: 4096}, DeliveredMarks: localapi.BookCount{Count: 11, Bytes: 4096},
		IdempotencyKeys: localapi.BookCount{Count: 3, Bytes: 8192}, DeadLetters: localapi.BookCount{Count: 2, Bytes: 1 << 20}}}}
	var b strings.Builder
	printStatus(&b, s, time.Now(), i18n.EN)
	if out := b.String(); !strings.Contains(out, "12 card aliases (4.0 KiB), 11 delivered marks (4.0 KiB), 3 idempotency keys (8.0 KiB), 2 dead letters (1.0 MiB)") {
		t.Errorf("status:\n%s", out)
	}
	b.Reset()
	printStatus(&b, s, time.Now(), i18n.TR)
	if out := b.String(); !strings.Contains(out, "3 tekrar anahtarı (8.0 KiB)") {
		t.Errorf("durum:\n%s", out)
	}
}
