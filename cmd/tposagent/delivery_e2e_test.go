package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/internal/testrig"
)

func (f *fixture) postKey(path, key, body string) (int, localapi.Accepted) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.client.BaseURL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var acc localapi.Accepted
	_ = json.NewDecoder(resp.Body).Decode(&acc)
	return resp.StatusCode, acc
}

// The POS's Idempotency-Key survives kill -9 of the agent: the repeat
// after a restart answers the first id and stores nothing; the key on
// another record is a 409.
func TestIdempotencyKeySurvivesKill(t *testing.T) {
	f := newFixture(t)
	f.oduyo.SetDown(true) // keep the record pending
	f.start()
	const key, code = "pos-0001-a9", `{"integration_id":"S-77","code":"ŞÇ-77"}`
	c, first := f.postKey("/v1/special-codes", key, code)
	if c != http.StatusAccepted {
		t.Fatalf("first: %d", c)
	}
	f.kill()
	f.start()
	c, again := f.postKey("/v1/special-codes", key, code)
	if c != http.StatusAccepted || again.ID != first.ID {
		t.Fatalf("repeat after kill -9: %d %+v, want 202 %+v", c, again, first)
	}
	if c, _ := f.postKey("/v1/special-codes", key, `{"integration_id":"S-78","code":"X"}`); c != http.StatusConflict {
		t.Errorf("other record under the key: %d, want 409", c)
	}
	f.oduyo.SetDown(false)
	testrig.WaitFor(t, "delivery", 20*time.Second, func() bool { return len(f.oduyo.Delivered()) == 1 })
	if d := f.oduyo.Delivered()[0]; d.IdempotencyKey != key || d.IntegrationID != "S-77" {
		t.Errorf("delivered %+v, want the POS's key sent on", d)
	}
	f.stop()
}

// A special code the server stored while the agent was killed before it
// saw the answer is looked up after the restart and not created again.
func TestSpecialCodeNotDuplicatedAcrossKill(t *testing.T) {
	f := newFixture(t)
	f.oduyo.FailNext(1, oduyotest.Fault{Stored: true, Delay: time.Minute, Only: oduyotest.KindSpecialCode})
	f.start()
	if c, _ := f.postKey("/v1/special-codes", "", `{"integration_id":"S-90","code":"ĞÜ-90"}`); c != http.StatusAccepted {
		t.Fatalf("enqueue: %d", c)
	}
	testrig.WaitFor(t, "the create stored by the server", 20*time.Second, func() bool { return len(f.oduyo.Delivered()) == 1 })
	f.kill() // the answer never arrives
	creates := f.oduyo.Requests()
	f.start()
	ctx := context.Background()
	if _, err := f.WaitStatus(ctx, 20*time.Second, 20*time.Millisecond, func(s localapi.Status) bool {
		return s.Outbox.Pending == 0 && s.Outbox.InFlight == 0
	}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.oduyo.Delivered()); n != 1 {
		t.Errorf("%d deliveries of S-90, want 1", n)
	}
	if n := f.oduyo.Requests() - creates; n != 0 {
		t.Errorf("%d creates after the restart, want 0: the record was found by the lookup", n)
	}
	st, _, _ := f.Status(ctx)
	if st.Outbox.Dead != 0 {
		t.Errorf("%d dead", st.Outbox.Dead)
	}
	f.stop()
}
