package localapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"

	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/outbox"
)

const token = "test-token-0123456789abcdef"

func newServer(t *testing.T, maxSize int64) (*httptest.Server, *outbox.Queue) {
	t.Helper()
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db"), MaxSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	h := localapi.NewHandler(localapi.Config{
		Token:   token,
		Queue:   agent.LocalQueue(q),
		Status:  func() localapi.Status { return localapi.Status{Version: "test", License: tposl.Unknown("x")} },
		License: func() license.License { return tposl.Unknown("never reached") },
		Device:  &fakeIdentity{},
	})
	srv := httptest.NewServer(contractChecked(t, h))
	t.Cleanup(srv.Close)
	return srv, q
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, localapi.ErrorBody, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	var eb localapi.ErrorBody
	json.Unmarshal(buf.Bytes(), &eb)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") && path != "/metrics" {
		t.Errorf("%s %s: content type %q", method, path, ct)
	}
	return resp.StatusCode, eb, buf.Bytes()
}

func pending(t *testing.T, q *outbox.Queue) int {
	t.Helper()
	st, err := q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending // in-flight items included
}

func TestEnqueueAnswers(t *testing.T) {
	srv, q := newServer(t, 0)
	tests := []struct {
		name, path, body string
		code             int
		field            string
	}{
		{"kasa ok", "/v1/kasa", `{"id":2,"integration_id":"2","status":"1","balance":"1.260,50","description":"MERKEZ KASA Şişli"}`, 202, ""},
		{"special ok", "/v1/special-codes", `{"integration_id":"1111111","code":"İNDİRİM","status":"1"}`, 202, ""},
		{"unknown field", "/v1/kasa", `{"integration_id":"2","balanse":"1"}`, 400, "balanse"},
		{"bad money", "/v1/kasa", `{"integration_id":"2","price":"12 lira"}`, 400, "price"},
		{"no key", "/v1/kasa", `{"status":"1"}`, 400, ""},
		{"special without code", "/v1/special-codes", `{"integration_id":"1"}`, 400, "code"},
		{"bad status", "/v1/kasa", `{"integration_id":"2","status":"2"}`, 400, "status"},
		{"bad datetime", "/v1/kasa", `{"integration_id":"2","kasafisi_created_in":"23.11.2026"}`, 400, "kasafisi_created_in"},
		{"invalid utf-8", "/v1/kasa", "{\"integration_id\":\"2\",\"note\":\"\xff\xfe\"}", 400, ""},
		{"not json", "/v1/kasa", `hello`, 400, ""},
		{"array", "/v1/kasa", `[{"integration_id":"2"}]`, 400, ""},
		{"too big", "/v1/kasa", `{"note":"` + strings.Repeat("a", localapi.MaxBody) + `"}`, 413, ""},
		{"wrapper not wanted", "/v1/kasa", `{"column":{"integration_id":"2"}}`, 400, "column"},
	}
	want := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, eb, raw := do(t, srv, "POST", tt.path, tt.body)
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, raw)
			}
			if code == 202 {
				want++
				var a localapi.Accepted
				if err := json.Unmarshal(raw, &a); err != nil || a.ID == 0 {
					t.Errorf("202 body %s: want {\"id\": N}", raw)
				}
			} else if eb.Error == "" {
				t.Errorf("error answer without a message: %s", raw)
			}
			if tt.field != "" && eb.Field != tt.field {
				t.Errorf("field = %q, want %q (%s)", eb.Field, tt.field, eb.Error)
			}
			if got := pending(t, q); got != want {
				t.Errorf("queue holds %d, want %d: a refused request must store nothing", got, want)
			}
		})
	}
	// Turkish text survives into the queue intact.
	items, _ := q.List(outbox.Pending, 10)
	if len(items) != 2 || !strings.Contains(string(items[0].Payload), "MERKEZ KASA Şişli") || !strings.Contains(string(items[0].Payload), `"1260.50"`) {
		t.Errorf("stored payloads: %v", items)
	}
}

func TestQueueFull(t *testing.T) {
	srv, q := newServer(t, 1<<20)
	accepted := 0
	big := strings.Repeat("ş", 900)
	for i := 0; ; i++ {
		body, _ := json.Marshal(map[string]string{"integration_id": "c" + string(rune('a'+i%26)) + strings.Repeat("x", i/26), "code": "X", "description": big})
		code, eb, raw := do(t, srv, "POST", "/v1/special-codes", string(body))
		if code == 202 {
			accepted++
			if i > 10000 {
				t.Fatal("queue never filled")
			}
			continue
		}
		if code != 503 || !strings.Contains(eb.Error, "full") {
			t.Fatalf("status %d %s, want 503 queue full", code, raw)
		}
		break
	}
	if got := pending(t, q); got != accepted {
		t.Errorf("queue holds %d after filling, want every accepted one (%d)", got, accepted)
	}
	t.Logf("accepted %d records before 503", accepted)
}

func TestOutboxActions(t *testing.T) {
	srv, q := newServer(t, 0)
	ctx := context.Background()
	it, err := q.Enqueue(ctx, outbox.Entry{Kind: outbox.KindSpecialCode, Key: "special_code:1", Payload: json.RawMessage(`{"integration_id":"1","code":"A"}`)})
	if err != nil {
		t.Fatal(err)
	}
	code, _, raw := do(t, srv, "GET", "/v1/outbox?state=pending", "")
	if code != 200 || !strings.Contains(string(raw), `"special_code:1"`) {
		t.Errorf("list: %d %s", code, raw)
	}
	if code, _, _ := do(t, srv, "GET", "/v1/outbox?state=weird", ""); code != 400 {
		t.Errorf("bad state: %d, want 400", code)
	}
	if code, _, _ := do(t, srv, "POST", "/v1/outbox/999/retry", ""); code != 404 {
		t.Errorf("retry unknown: %d, want 404", code)
	}
	// Retry of a pending record is "send now", not 404.
	if code, _, raw := do(t, srv, "POST", "/v1/outbox/"+itoa(it.ID)+"/retry", ""); code != 200 {
		t.Errorf("retry of a pending record: %d %s, want 200", code, raw)
	}
	if code, _, _ := do(t, srv, "DELETE", "/v1/outbox/abc", ""); code != 400 {
		t.Errorf("drop bad id: %d, want 400", code)
	}
	if code, _, raw := do(t, srv, "DELETE", "/v1/outbox/"+itoa(it.ID), ""); code != 200 {
		t.Errorf("drop: %d %s", code, raw)
	}
	if n := pending(t, q); n != 0 {
		t.Errorf("after drop %d pending", n)
	}
	if code, _, _ := do(t, srv, "GET", "/v1/nope", ""); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
	if code, _, _ := do(t, srv, "PUT", "/v1/kasa", "{}"); code != 405 {
		t.Errorf("wrong method: %d, want 405", code)
	}
	code, _, raw = do(t, srv, "GET", "/metrics", "")
	if code != 200 || !strings.Contains(string(raw), "tposagent_outbox_pending 0") || !strings.Contains(string(raw), `tposagent_license_state{state="unknown"} 1`) {
		t.Errorf("metrics: %d\n%s", code, raw)
	}
}

func itoa(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func TestUnauthorized(t *testing.T) {
	srv, _ := newServer(t, 0)
	for _, h := range []string{"", "Bearer ", "Bearer " + token + "x", "Bearer " + token[:10], "Token " + token} {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/kasa", strings.NewReader(`{"integration_id":"1"}`))
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: %d, want 401", h, resp.StatusCode)
		}
	}
}

func TestClient(t *testing.T) {
	srv, _ := newServer(t, 0)
	c := &localapi.Client{BaseURL: srv.URL, Token: token}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Enqueue(ctx, "/v1/kasa", []byte(`{"integration_id":"1","price":"x"}`)); err == nil {
		t.Error("bad record accepted")
	} else {
		var ae *localapi.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 400 || ae.Field != "price" {
			t.Errorf("err = %#v", err)
		}
	}
	bad := &localapi.Client{BaseURL: srv.URL, Token: "wrong"}
	if _, err := bad.Status(ctx); err == nil || !strings.Contains(err.Error(), "token") {
		t.Errorf("wrong token: %v", err)
	}
	srv.Close()
	if _, err := c.Status(ctx); !errors.Is(err, localapi.ErrNotRunning) {
		t.Errorf("closed server: %v, want localapi.ErrNotRunning", err)
	}
}

func TestBaseURLFor(t *testing.T) {
	for in, want := range map[string]string{"127.0.0.1:8787": "http://127.0.0.1:8787", "0.0.0.0:80": "http://127.0.0.1:80", ":9": "http://127.0.0.1:9", "[::]:1": "http://127.0.0.1:1"} {
		if got := localapi.BaseURLFor(in); got != want {
			t.Errorf("localapi.BaseURLFor(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAcceptedBodyAsWriteJSON(t *testing.T) {
	for _, acc := range []localapi.Accepted{{ID: 1, Key: "kasa:id:2"}, {ID: 18446744073709551615, Key: "special_code:<Şişli & \"Çağrı\">\u2028"}, {}} {
		rec := httptest.NewRecorder()
		localapi.WriteAcceptedForTest(rec, acc)
		want, _ := json.MarshalIndent(acc, "", "  ")
		if got := rec.Body.String(); got != string(want)+"\n" || rec.Code != 202 || rec.Header().Get("Content-Type") != "application/json; charset=utf-8" || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%+v: %d %q\nwant %q", acc, rec.Code, got, want)
		}
	}
}
