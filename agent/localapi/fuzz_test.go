package localapi_test

// Fuzzing of the local API: every byte the POS application may send
// reaches the real handler over a real outbox file. The invariants:
//
//   - no panic;
//   - every answer is 202, or a 4xx/503 with a JSON {"error": non-empty};
//   - no partial enqueue: the pending count grows by exactly 1 on a 202
//     and stays the same otherwise;
//   - on a 202 the stored payload is valid UTF-8 JSON that normalises to
//     itself, under the key the answer named.
//
// The recorded run (README, reliability):
//
//	go test -run '^$' -fuzz '^FuzzKasa$' -fuzztime 100000x ./agent/localapi
//	go test -run '^$' -fuzz '^FuzzSpecialCodes$' -fuzztime 100000x ./agent/localapi
//	go test -run '^$' -fuzz '^FuzzAPI$' -fuzztime 100000x ./agent/localapi
//
// Without -fuzz, go test runs the seeds below and testdata/fuzz/ once.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tposagent/tposagent/agent"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"

	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/outbox"
)

const fuzzToken = "fuzz-token-3f9a0c1d2e4b5a69"

// fuzzHandler opens one real outbox for the fuzz worker (the body of a
// FuzzX function runs once per process, f.Fuzz's callback many times).
func fuzzHandler(f *testing.F) (http.Handler, *outbox.Queue) {
	f.Helper()
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(f.TempDir(), "outbox.db")})
	if err != nil {
		f.Fatalf("open outbox: %v", err)
	}
	f.Cleanup(func() { q.Close() })
	h := localapi.NewHandler(localapi.Config{
		Token:   fuzzToken,
		Queue:   agent.LocalQueue(q),
		Status:  func() localapi.Status { return localapi.Status{Version: "fuzz", License: tposl.Unknown("fuzz")} },
		License: func() license.License { return tposl.Unknown("fuzz") },
	})
	return h, q
}

// queuePending counts the committed pending items. (Stats is published by
// the queue's loop a moment after the commit; List reads the file.)
func queuePending(t *testing.T, q *outbox.Queue) int {
	t.Helper()
	items, err := q.List(outbox.Pending, 1000)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return len(items)
}

// checkAnswer asserts the shape of any answer and, for a 202 on an
// enqueue path, what was stored; it then drops the item so that every
// input starts from an empty queue (no coalescing across inputs).
func checkAnswer(t *testing.T, q *outbox.Queue, rec *httptest.ResponseRecorder, path string, before int) {
	t.Helper()
	code, body := rec.Code, rec.Body.Bytes()
	after := queuePending(t, q)
	if code == http.StatusAccepted {
		if after != before+1 {
			t.Fatalf("202 but pending %d -> %d", before, after)
		}
		var acc localapi.Accepted
		if err := json.Unmarshal(body, &acc); err != nil || acc.ID == 0 || acc.Key == "" {
			t.Fatalf("202 body %q: %v", body, err)
		}
		it, state, err := q.Get(acc.ID)
		if err != nil || state != outbox.Pending {
			t.Fatalf("accepted item %d: state %v, err %v", acc.ID, state, err)
		}
		if !utf8.Valid(it.Payload) || !json.Valid(it.Payload) {
			t.Fatalf("stored payload is not valid UTF-8 JSON: %q", it.Payload)
		}
		normalize := records.NormalizeKasa
		if path == "/v1/special-codes" {
			normalize = records.NormalizeSpecialCode
		}
		again, key, err := normalize(it.Payload)
		if err != nil {
			t.Fatalf("stored payload does not normalise again: %v\n%s", err, it.Payload)
		}
		if !bytes.Equal(again, it.Payload) || key != it.Key || key != acc.Key {
			t.Fatalf("normalisation is not stable:\nstored %s (key %s)\nagain  %s (key %s)", it.Payload, it.Key, again, key)
		}
		if err := q.Drop(acc.ID); err != nil {
			t.Fatalf("drop %d: %v", acc.ID, err)
		}
		return
	}
	if after != before {
		t.Fatalf("answer %d but pending %d -> %d (partial enqueue)", code, before, after)
	}
	if code == http.StatusOK {
		return // a read (status, license, list, metrics)
	}
	if (code < 400 || code > 499) && code != http.StatusServiceUnavailable {
		t.Fatalf("answer %d: want 202, 4xx or 503; body %q", code, body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error answer %d with content type %q", code, ct)
	}
	var eb localapi.ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || strings.TrimSpace(eb.Error) == "" {
		t.Fatalf("error answer %d without a message: %q (%v)", code, body, err)
	}
	if !utf8.ValidString(eb.Error) {
		t.Fatalf("error message is not UTF-8: %q", eb.Error)
	}
}

func post(h http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fuzzToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// seedsCommon are hostile bodies for both record kinds.
func seedsCommon() [][]byte {
	long := strings.Repeat("ş", 10000)
	return [][]byte{
		[]byte(``),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(`"string"`),
		[]byte(`{}`),
		[]byte(`{"integration_id":`),
		[]byte(`{"integration_id":"1"}{"integration_id":"2"}`),
		[]byte(`{"integration_id":"1"} trailing`),
		[]byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)),
		[]byte(strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat("}", 5000)),
		[]byte(`{"integration_id":"dup","integration_id":"dup2","code":"C"}`),
		[]byte(`{"integration_id":null,"code":null,"status":null}`),
		[]byte(`{"integration_id":12,"code":true,"status":2}`),
		[]byte(`{"integration_id":["a"],"code":{"x":1}}`),
		[]byte("{\"integration_id\":\"\xff\xfe\",\"code\":\"C\"}"),
		[]byte("{\"integration_id\":\"a\",\"code\":\"\xc3\x28\"}"),
		[]byte(`{"integration_id":"\ud800","code":"C"}`),
		[]byte("\xef\xbb\xbf{\"integration_id\":\"bom\",\"code\":\"C\"}"),
		[]byte(`{"integration_id":"` + long + `","code":"C"}`),
		[]byte(`{"integration_id":"x","code":"C","description":"` + strings.Repeat("a", 10000) + `"}`),
		[]byte(`{"integration_id":" x ","code":"C"}`),
		[]byte(`{"integration_id":"x","code":"a\u0000b"}`),
		[]byte(`{"Integration_ID":"x","code":"C"}`),
		[]byte(`{"integration_id":"x","code":"C","unknown":"y"}`),
	}
}

func FuzzKasa(f *testing.F) {
	h, q := fuzzHandler(f)
	for _, s := range seedsCommon() {
		f.Add(s)
	}
	for _, s := range []string{
		// The spec's example, as the POS sends it.
		`{"id":2,"integration_id":"2","status":"1","key1":"21","key2":"1","note":"--","price":"100","price1":"120","price2":"0","balance":"1260","balance1":"1566","balance2":"","description":"MERKEZ KASA","space2":"","space3":"","space4":"","space5":"","kasafisi_created_in":"2025-05-23 00:00:00","kasafisi_updated_in":"2025-05-23 00:00:00"}`,
		`{"integration_id":"K-1","status":1,"balance":"1.260,50","note":"Ödeme ğüşıöçİ — Kadıköy"}`,
		`{"id":"0042","balance":1260.5,"price":"-3,25"}`,
		`{"id":0}`,
		`{"id":-1}`,
		`{"id":1.5}`,
		`{"id":"","integration_id":""}`,
		`{"id":99999999999999999999999}`,
		`{"id":1,"price":"1.260"}`,
		`{"id":1,"price":"1e400"}`,
		`{"id":1,"price":1e-400}`,
		`{"id":1,"balance":"12,345,678.90"}`,
		`{"id":1,"kasafisi_created_in":"2025-02-30 25:61:61"}`,
		`{"id":1,"kasafisi_created_in":"2025-05-23T00:00:00Z"}`,
		`{"id":1,"status":"2"}`,
		`{"id":1,"note":"` + strings.Repeat("İ", 1000) + `"}`,
		`{"id":1,"note":"` + strings.Repeat("İ", 1001) + `"}`,
		`{"id":1,"note":"tab\tcr\rlf\n"}`,
		`{"id":1,"note":"<script>alert(1)</script> & \u2028"}`,
	} {
		f.Add([]byte(s))
	}
	// A body just over the limit: 413, nothing stored.
	f.Add([]byte(`{"id":1,"note":"` + strings.Repeat("a", localapi.MaxBody) + `"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := queuePending(t, q)
		rec := post(h, "/v1/kasa", body)
		if len(body) > localapi.MaxBody && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%d-byte body: answer %d, want 413", len(body), rec.Code)
		}
		if !utf8.Valid(body) && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("invalid UTF-8 body: answer %d, want 400", rec.Code)
		}
		checkAnswer(t, q, rec, "/v1/kasa", before)
	})
}

func FuzzSpecialCodes(f *testing.F) {
	h, q := fuzzHandler(f)
	for _, s := range seedsCommon() {
		f.Add(s)
	}
	for _, s := range []string{
		`{"integration_id":"1111111","code":"TESTCODE","status":"1","key1":"21","key2":"1","typecode":"26","description":"-- asdfsd fasdfasdfasdf","space1":"","space2":"","space3":"","space4":"","space5":"","special_created_in":"2025-05-23 00:00:00","special_updated_in":"2025-05-23 00:00:00"}`,
		`{"integration_id":"ÖZEL-1","code":"Ğ1","status":0,"description":"Şırnak İli ılık çörek"}`,
		`{"integration_id":"x","code":""}`,
		`{"integration_id":"x"}`,
		`{"code":"C"}`,
		`{"integration_id":"x","code":"C","created_in":"2025-05-23 00:00:00","updated_in":""}`,
		`{"integration_id":"x","code":"C","typecode":26}`,
		`{"integration_id":"x","code":"\ud83d\ude00"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := queuePending(t, q)
		rec := post(h, "/v1/special-codes", body)
		if !utf8.Valid(body) && rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("invalid UTF-8 body: answer %d, want 400", rec.Code)
		}
		checkAnswer(t, q, rec, "/v1/special-codes", before)
	})
}

// FuzzAPI throws any method, target and body at the handler, with or
// without the token.
func FuzzAPI(f *testing.F) {
	h, q := fuzzHandler(f)
	f.Add("POST", "/v1/kasa", []byte(`{"id":7,"note":"ğ"}`), true)
	f.Add("POST", "/v1/special-codes", []byte(`{"integration_id":"s","code":"c"}`), true)
	f.Add("POST", "/v1/kasa", []byte(`{"id":7}`), false)
	f.Add("GET", "/v1/status", []byte(nil), true)
	f.Add("GET", "/v1/license", []byte(nil), true)
	f.Add("GET", "/v1/outbox?state=dead&limit=3", []byte(nil), true)
	f.Add("GET", "/v1/outbox?state=nope&limit=-1", []byte(nil), true)
	f.Add("POST", "/v1/outbox/1/retry", []byte(nil), true)
	f.Add("POST", "/v1/outbox/18446744073709551616/retry", []byte(nil), true)
	f.Add("DELETE", "/v1/outbox/0", []byte(nil), true)
	f.Add("DELETE", "/v1/outbox/%ff", []byte(nil), true)
	f.Add("PUT", "/v1/kasa", []byte(`{}`), true)
	f.Add("GET", "/metrics", []byte(nil), true)
	f.Add("GET", "/../../etc/passwd", []byte(nil), true)
	f.Add("BREW", "/v1/kasa/", []byte(`{}`), true)
	f.Add("POST", "/v1/kasa?x=1#frag", []byte(`{"integration_id":"q"}`), true)
	f.Fuzz(func(t *testing.T, method, target string, body []byte, auth bool) {
		if method == "" || strings.ContainsAny(method, " \t\r\n") || !utf8.ValidString(method) {
			return // not something net/http would hand to a handler
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" {
			return
		}
		req := &http.Request{
			Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Body: http.NoBody, Host: "127.0.0.1", RemoteAddr: "127.0.0.1:1",
		}
		if len(body) > 0 {
			req.Body, req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		}
		req = req.WithContext(context.Background())
		if auth {
			req.Header.Set("Authorization", "Bearer "+fuzzToken)
		}
		before := queuePending(t, q)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !auth && rec.Code != http.StatusUnauthorized {
			t.Fatalf("%s %s without a token: answer %d, want 401", method, target, rec.Code)
		}
		path := u.Path
		if rec.Code == http.StatusAccepted && path != "/v1/kasa" && path != "/v1/special-codes" {
			t.Fatalf("%s %s: 202 on a path that does not enqueue", method, target)
		}
		if rec.Code == http.StatusOK && method != http.MethodGet && method != http.MethodHead {
			// retry/drop of an item: the queue is empty between inputs, so
			// there is nothing to act on.
			t.Fatalf("%s %s: 200 on an empty queue: %s", method, target, rec.Body)
		}
		checkAnswer(t, q, rec, path, before)
	})
}
