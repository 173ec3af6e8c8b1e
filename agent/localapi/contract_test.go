package localapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/outbox"
)

// The contract: every request a test sends through newServer and every
// answer of the handler is checked against the OpenAPI document
// (localapi.OpenAPI, served at /v1/openapi.json):
//   - every answer to a documented operation must match the document
//     (status code documented, content type, body schema);
//   - a request the handler accepted (2xx) must be valid by the document;
//   - a path or method the document does not know is answered 401, 404 or 405.

var (
	contractOnce   sync.Once
	contractRouter routers.Router
	contractErr    error

	// validated counts the checked answers per operation and status.
	validatedMu sync.Mutex
	validated   = map[string]map[int]int{}
)

func loadContract(t testing.TB) routers.Router {
	t.Helper()
	contractOnce.Do(func() {
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(localapi.OpenAPI)
		if err != nil {
			contractErr = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			contractErr = err
			return
		}
		doc.Servers = nil // match the test server's random port
		contractRouter, contractErr = gorillamux.NewRouter(doc)
	})
	if contractErr != nil {
		t.Fatalf("OpenAPI document: %v", contractErr)
	}
	return contractRouter
}

// contractChecked wraps h so that every exchange is checked against the
// document; violations fail t.
func contractChecked(t testing.TB, h http.Handler) http.Handler {
	router := loadContract(t)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())

		check := r.Clone(context.Background())
		check.Body = io.NopCloser(bytes.NewReader(body))
		check.URL.Scheme, check.URL.Host = "http", r.Host
		// The handler ignores a UTF-8 byte-order mark (Notepad writes one).
		check.Body = io.NopCloser(bytes.NewReader(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))))
		if len(body) > 0 && check.Header.Get("Content-Type") == "" {
			// The handler reads every body as JSON whatever its type;
			// the document asks for application/json.
			check.Header.Set("Content-Type", "application/json")
		}
		route, params, err := router.FindRoute(check)
		if err != nil {
			if c := rec.Code; c != 401 && c != 404 && c != 405 {
				t.Errorf("contract: %s %s is not in the document but was answered %d", r.Method, r.URL.Path, c)
			}
			return
		}
		if rec.Code == http.StatusNotFound && strings.HasPrefix(rec.Body.String(), "{\n  \"error\": \"no such endpoint") {
			return // documented, not served by this build
		}
		opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
		in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route, Options: opts}
		reqErr := openapi3filter.ValidateRequest(context.Background(), in)
		if rec.Code/100 == 2 && reqErr != nil {
			t.Errorf("contract: %s %s was accepted (%d) but the document refuses the request: %v", r.Method, r.URL.Path, rec.Code, reqErr)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Options: opts}
		out.SetBodyBytes(rec.Body.Bytes())
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("contract: answer %d to %s %s does not match the document: %v\n%s", rec.Code, r.Method, r.URL.Path, err, trim(rec.Body.Bytes()))
		}
		validatedMu.Lock()
		op := route.Operation.OperationID
		if validated[op] == nil {
			validated[op] = map[int]int{}
		}
		validated[op][rec.Code]++
		validatedMu.Unlock()
	})
}

func trim(b []byte) string {
	if len(b) > 400 {
		return string(b[:400]) + "…"
	}
	return string(b)
}

// TestContract drives every operation of the document through the
// checked handler: the success answer of each and its documented errors.
func TestContract(t *testing.T) {
	srv, q := newServer(t, 0)
	// Item 1 becomes a dead letter (to retry), 2 stays pending (to drop).
	for _, k := range []string{"special_code:dead", "special_code:live"} {
		if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: k, Payload: json.RawMessage(`{"code":"X"}`)}); err != nil {
			t.Fatal(err)
		}
		if k == "special_code:dead" {
			refuseAll(t, q, 1)
		}
	}
	type call struct {
		method, path, body string
		header             map[string]string
		want               int
	}
	calls := []call{
		{"GET", "/", "", nil, 200},
		{"GET", "/?lang=en", "", nil, 200},
		{"GET", "/v1/openapi.json", "", nil, 200},
		{"GET", "/v1/status", "", nil, 200},
		{"GET", "/v1/license", "", nil, 200},
		{"GET", "/metrics", "", nil, 200},
		{"POST", "/v1/kasa", `{"id":2,"integration_id":"2","status":"1","balance":"1.260,50","description":"MERKEZ KASA Şişli","kasafisi_updated_in":"2025-05-23 00:00:00"}`, nil, 202},
		{"POST", "/v1/kasa", `{"id":3,"price":1260.5,"status":0,"note":null}`, map[string]string{"Idempotency-Key": "pos-4711"}, 202},
		{"POST", "/v1/special-codes", `{"integration_id":"1111111","code":"İNDİRİM","status":"1","typecode":"26"}`, nil, 202},
		{"POST", "/v1/kasa", `{"integration_id":"2","balanse":"1"}`, nil, 400},
		{"POST", "/v1/special-codes", `{"integration_id":"1"}`, nil, 400},
		{"POST", "/v1/kasa", `{"note":"` + strings.Repeat("a", localapi.MaxBody) + `"}`, nil, 413},
		{"GET", "/v1/outbox?state=pending&limit=10", "", nil, 200},
		{"GET", "/v1/outbox?state=dead", "", nil, 200},
		{"GET", "/v1/outbox?state=weird", "", nil, 400},
		{"POST", "/v1/outbox/2/retry", "", nil, 200},   // 2 is pending: send it now
		{"POST", "/v1/outbox/999/retry", "", nil, 404}, // no such record
		{"POST", "/v1/outbox/1/retry", "", nil, 200},
		{"POST", "/v1/outbox/0/retry", "", nil, 400},
		{"DELETE", "/v1/outbox/999", "", nil, 404},
		{"DELETE", "/v1/outbox/2", "", nil, 200},
		{"HEAD", "/", "", nil, 200},
		{"HEAD", "/v1/openapi.json", "", nil, 200},
		{"GET", "/v1/status", "", map[string]string{"Authorization": "Bearer wrong"}, 401},
		{"PUT", "/v1/kasa", "{}", nil, 405},
		{"POST", "/v1/license", "{}", nil, 405},
		{"PUT", "/v1/device", `{"fiscal_serial":"JI20012345","brand":"HUGIN","model":"VIP 80 PLUS","ecr_serial":"12345678"}`, nil, 200},
		{"GET", "/v1/device", "", nil, 200},
		{"PUT", "/v1/device", `{"fiscal_serial":"XX00000000"}`, nil, 400},
		{"PUT", "/v1/device", `{"fiscal_serial":"JI20012345","colour":"red"}`, nil, 400},
		{"GET", "/v1/hello?nonce=00112233445566778899aabbccddeeff", "", map[string]string{"Authorization": ""}, 200},
		{"GET", "/v1/hello?nonce=", "", map[string]string{"Authorization": ""}, 400},
		{"GET", "/v1/status", "", map[string]string{"Host": "evil.example"}, 421},
		{"GET", "/v1/hello?nonce=00112233445566778899aabbccddeeff", "", map[string]string{"Host": "evil.example:8787"}, 421},
		{"POST", "/v1/kasa", `{"id":2}`, map[string]string{"Origin": "http://evil.example"}, 403},
	}
	unserved := map[string]bool{}
	for _, c := range calls {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+token)
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range c.header {
			switch {
			case k == "Host":
				req.Host = v
			case v == "":
				req.Header.Del(k)
			default:
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case c.want == 0 && resp.StatusCode == 404:
			unserved[c.method+" "+c.path] = true
			t.Logf("%s %s: not served by this build yet (documented for the POS developers)", c.method, c.path)
		case c.want != 0 && resp.StatusCode != c.want:
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, resp.StatusCode, c.want, trim(b))
		}
	}
	// The served document is the one in the repository.
	resp, err := http.Get(srv.URL + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(served, localapi.OpenAPI) || !json.Valid(served) {
		t.Errorf("GET /v1/openapi.json without a token: %d, %d bytes (want the document, %d bytes)", resp.StatusCode, len(served), len(localapi.OpenAPI))
	}

	// Every operation of the document had a success answer checked,
	// except those this build does not serve yet.
	validatedMu.Lock()
	defer validatedMu.Unlock()
	doc, _ := openapi3.NewLoader().LoadFromData(localapi.OpenAPI)
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops = append(ops, op.OperationID)
			ok := false
			for code, n := range validated[op.OperationID] {
				ok = ok || (code/100 == 2 && n > 0)
			}
			if !ok && !unserved[method+" "+path] {
				t.Errorf("operation %s (%s %s): no success answer was checked against the document", op.OperationID, method, path)
			}
		}
	}
	sort.Strings(ops)
	for _, op := range ops {
		t.Logf("checked %s: %v", op, validated[op])
	}
}

// FuzzContract sends arbitrary records to both POST operations through the
// checked handler: whatever the body, the answer matches the document, and
// a body the handler accepts is one the document allows.
//
//	go test -run '^$' -fuzz '^FuzzContract$' -fuzztime 60s -fuzzminimizetime 0 ./agent/localapi
func FuzzContract(f *testing.F) {
	h, _ := fuzzHandler(f)
	for _, s := range []string{
		`{"id":2,"integration_id":"2","status":"1","balance":"1.260,50","description":"MERKEZ KASA"}`,
		`{"integration_id":"1111111","code":"TESTCODE","status":1,"typecode":"26","created_in":""}`,
		`{"id":"0042","price":1260.5,"note":null}`, "\xef\xbb\xbf{\"id\":1}", `{"id":1,"note":"\u00e7"}`, `[]`, `{"id":-1}`,
	} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, body string, kasa bool) {
		path := "/v1/special-codes"
		if kasa {
			path = "/v1/kasa"
		}
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8787"+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fuzzToken)
		req.Header.Set("Content-Type", "application/json")
		contractChecked(t, h).ServeHTTP(httptest.NewRecorder(), req)
	})
}
