package localapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
	"github.com/tposagent/tposagent/outbox/outboxtest"
)

func doKey(t *testing.T, url, path, key, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// A POS that lost the answer sends again with its Idempotency-Key: the
// first 202 and id, nothing stored; the key on another record is a 409.
func TestIdempotencyKeyHeader(t *testing.T) {
	srv, q := newServer(t, 0)
	const code = `{"integration_id":"S-1","code":"İNDİRİM-5"}`
	c1, a1 := doKey(t, srv.URL, "/v1/special-codes", "pos-7f3a-0001", code)
	if c1 != http.StatusAccepted {
		t.Fatalf("first: %d %v", c1, a1)
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, a := doKey(t, srv.URL, "/v1/special-codes", "pos-7f3a-0001", code)
			if c != http.StatusAccepted || a["id"] != a1["id"] || a["key"] != a1["key"] {
				t.Errorf("repeat: %d %v, want 202 %v", c, a, a1)
			}
		}()
	}
	wg.Wait()
	if n := pending(t, q); n != 1 {
		t.Errorf("%d pending, want 1: repeats stored nothing", n)
	}
	items, _ := q.List(outbox.Pending, 0)
	if len(items) != 1 || items[0].IdempotencyKey != "pos-7f3a-0001" {
		t.Errorf("items %+v: the POS's key is the one sent to Ödüyo", items)
	}
	c, e := doKey(t, srv.URL, "/v1/special-codes", "pos-7f3a-0001", `{"integration_id":"S-1","code":"BAŞKA"}`)
	if c != http.StatusConflict || e["field"] != "Idempotency-Key" || !strings.Contains(fmt.Sprint(e["error"]), "another record") {
		t.Errorf("other body: %d %v", c, e)
	}
	// The same key on the other endpoint is another record too.
	if c, _ := doKey(t, srv.URL, "/v1/kasa", "pos-7f3a-0001", `{"id":1}`); c != http.StatusConflict {
		t.Errorf("other endpoint: %d", c)
	}
	for _, bad := range []string{strings.Repeat("x", 129), "ş-key"} {
		if c, e := doKey(t, srv.URL, "/v1/kasa", bad, `{"id":1}`); c != http.StatusBadRequest || e["field"] != "Idempotency-Key" {
			t.Errorf("key %q: %d %v", bad, c, e)
		}
	}
	// Printable ASCII includes the space: a key with one inside is a key,
	// and its repeat replays.
	for range 2 {
		if c, e := doKey(t, srv.URL, "/v1/special-codes", "order 42 / till 3", `{"integration_id":"s-1","code":"K"}`); c != http.StatusAccepted {
			t.Fatalf("a key with spaces inside: %d %v", c, e)
		}
	}
	// Without the header every POST is a new record.
	for range 2 {
		if c, _ := doKey(t, srv.URL, "/v1/special-codes", "", code); c != http.StatusAccepted {
			t.Fatal(c)
		}
	}
	if n := pending(t, q); n != 4 {
		t.Errorf("%d pending, want 4 (the first, the spaced key once, two without a key)", n)
	}
}

// One card, one key through the API: an update with id and
// integration_id and a later one with only the integration_id coalesce.
func TestKasaNamesShareOneKey(t *testing.T) {
	srv, q := newServer(t, 0)
	_, a := doKey(t, srv.URL, "/v1/kasa", "", `{"id":960,"integration_id":"960","balance":"10"}`)
	_, b := doKey(t, srv.URL, "/v1/kasa", "", `{"integration_id":"960","balance":"20"}`)
	_, c := doKey(t, srv.URL, "/v1/kasa", "", `{"id":"960","balance":"30"}`)
	if a["key"] != b["key"] || b["key"] != c["key"] {
		t.Fatalf("keys %v %v %v", a["key"], b["key"], c["key"])
	}
	items, _ := q.List(outbox.Pending, 0)
	if len(items) != 1 || !strings.Contains(string(items[0].Payload), `"balance":"30.00"`) {
		t.Errorf("pending %+v, want the newest state alone", items)
	}
}

// outbox retry of a dead kasa update after a newer one of the same card
// was delivered: 409 naming the newer delivery; ?force=true sends it.
func TestRetryStaleNeedsForce(t *testing.T) {
	srv, q := newServer(t, 0)
	_, old := doKey(t, srv.URL, "/v1/kasa", "", `{"id":5,"integration_id":"K5","balance":"1"}`)
	oldID := uint64(old["id"].(float64))
	s := outboxtest.NewSender()
	s.ScriptID(oldID, outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 400"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, s) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	waitStats := func(what string, cond func(outbox.Stats) bool) {
		t.Helper()
		testrig.WaitFor(t, what, 10*time.Second, func() bool { st, err := q.Stats(); return err == nil && cond(st) })
	}
	waitStats("dead", func(st outbox.Stats) bool { return st.Dead == 1 })
	_, newer := doKey(t, srv.URL, "/v1/kasa", "", `{"integration_id":"K5","balance":"2"}`)
	waitStats("newer delivered", func(st outbox.Stats) bool { return st.Delivered == 1 })
	code, e, _ := do(t, srv, "POST", fmt.Sprintf("/v1/outbox/%d/retry", oldID), "")
	if code != http.StatusConflict || !strings.Contains(e.Error, fmt.Sprintf("item %v", newer["id"])) || !strings.Contains(e.Error, "force") {
		t.Fatalf("retry: %d %+v", code, e)
	}
	if code, e, _ := do(t, srv, "POST", fmt.Sprintf("/v1/outbox/%d/retry?force=maybe", oldID), ""); code != http.StatusBadRequest {
		t.Errorf("bad force: %d %+v", code, e)
	}
	if code, e, _ := do(t, srv, "POST", fmt.Sprintf("/v1/outbox/%d/retry?force=true", oldID), ""); code != http.StatusOK {
		t.Fatalf("forced retry: %d %+v", code, e)
	}
	waitStats("forced delivered", func(st outbox.Stats) bool { return st.Delivered == 2 && st.Dead == 0 })
}
