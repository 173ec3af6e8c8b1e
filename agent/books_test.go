package agent

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/testrig"
)

// Status and /metrics show the outbox's bookkeeping per kind: card
// aliases, delivered marks, idempotency keys, dead letters, each with its
// count and bytes.
func TestStatusAndMetricsShowTheBookkeeping(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	a, err := New(testConfig(t, tp, od), Options{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	post := func(path, key, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+a.Addr().String()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.cfg.API.Token.Reveal())
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	post("/v1/special-codes", "order-1", `{"integration_id":"c-1","code":"K1"}`)
	post("/v1/special-codes", "order-2", `{"integration_id":"c-2","code":"K2"}`)
	post("/v1/kasa", "card-7", `{"id":7,"integration_id":"ERP-7","status":"1","balance":"1.00"}`)
	// The drain wakes the janitor, which counts.
	testrig.WaitFor(t, "delivered and counted", 30*time.Second, func() bool {
		o := a.Status().Outbox
		b := o.Bookkeeping
		return o.Delivered == 3 && b != nil && b.IdempotencyKeys.Count == 3 && b.Aliases.Count >= 1 && b.DeliveredMarks.Count == 1
	})
	b := a.Status().Outbox.Bookkeeping
	if b.IdempotencyKeys.Bytes <= 0 || b.Aliases.Bytes <= 0 || b.DeliveredMarks.Bytes <= 0 || b.CountedAt == nil || b.DeadLetters.Count != 0 {
		t.Fatalf("bookkeeping %+v", b)
	}
	m := metricsOf(t, a)
	for _, want := range []string{
		`tposagent_outbox_bookkeeping_entries{kind="idempotency_keys"} 3`,
		`tposagent_outbox_bookkeeping_entries{kind="delivered_marks"} 1`,
		`tposagent_outbox_bookkeeping_entries{kind="dead_letters"} 0`,
		`tposagent_outbox_bookkeeping_bytes{kind="aliases"} `,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	code, body := call(t, a, "GET", "/v1/status", "")
	if code != 200 || !strings.Contains(string(body), `"idempotency_keys": {`) {
		t.Errorf("/v1/status: %d %s", code, body)
	}
}
