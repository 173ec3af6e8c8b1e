package localapi_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/outbox"
)

// guarded is the real API over a real outbox on a real Server; it counts
// the calls of its status and licence functions (work done for a caller).
func guarded(t *testing.T, listen string, allowed []string) (addr string, q *outbox.Queue, work *atomic.Int64) {
	t.Helper()
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	work = &atomic.Int64{}
	h := localapi.NewHandler(localapi.Config{
		Token: token,
		Queue: agent.LocalQueue(q),
		Status: func() localapi.Status {
			work.Add(1)
			return localapi.Status{Version: "test", License: tposl.Unknown("x")}
		},
		License:      func() license.License { work.Add(1); return tposl.Unknown("x") },
		Listen:       listen,
		AllowedHosts: allowed,
	})
	_, addr = serve(t, h, localapi.ServerOptions{})
	return addr, q, work
}

type hostCall struct {
	method, path, body string
	token              bool
}

// every endpoint, public or not, reading or changing
var hostCalls = []hostCall{
	{"GET", "/", "", false},
	{"GET", "/v1/openapi.json", "", false},
	{"GET", "/v1/hello?nonce=00112233445566778899aabbccddeeff", "", false},
	{"GET", "/metrics", "", true},
	{"GET", "/v1/status", "", true},
	{"GET", "/v1/license", "", true},
	{"GET", "/v1/outbox?state=pending", "", true},
	{"POST", "/v1/kasa", `{"id":2,"integration_id":"2","description":"MERKEZ KASA"}`, true},
	{"POST", "/v1/special-codes", `{"integration_id":"1111111","code":"X","status":"1","typecode":"26"}`, true},
	{"POST", "/v1/outbox/1/retry", "", true},
	{"DELETE", "/v1/outbox/1", "", true},
	{"PUT", "/v1/device", `{"fiscal_serial":"JI20012345"}`, true},
	{"GET", "/v1/status", "", false}, // 401 without the guard
}

func call(t *testing.T, addr, host, origin string, c hostCall) (int, localapi.ErrorBody, http.Header) {
	t.Helper()
	req, err := http.NewRequest(c.method, "http://"+addr+c.path, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body == "" {
		req.Body, req.ContentLength = nil, 0
	}
	req.Host = host
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if c.token {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %q): %v", c.method, c.path, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb localapi.ErrorBody
	json.Unmarshal(b, &eb)
	return resp.StatusCode, eb, resp.Header
}

// TestHostAllowList: with a loopback listen only 127.0.0.1,
// [::1] and localhost, with or without the port, are served; any other
// Host is answered 421 with a JSON error on every endpoint, public ones
// included, before any work (nothing stored, no status computed). On the
// code before the guard every one of these was served (200/202).
func TestHostAllowList(t *testing.T) {
	addr, q, work := guarded(t, "127.0.0.1:8787", nil)
	_, port, _ := net.SplitHostPort(addr)
	for _, host := range []string{"evil.example", "evil.example:" + port, "127.0.0.1.evil.example", "localhost.evil.example:" + port,
		"localhost:1", "127.0.0.1:" + port + "0", "[::1]:1", "10.1.2.3", "kasa1", "localhost.", "127.0.0.1:", "::1", "[::1"} {
		for _, c := range hostCalls {
			code, eb, hdr := call(t, addr, host, "", c)
			if code != http.StatusMisdirectedRequest || eb.Field != "Host" || !strings.Contains(eb.Error, "not this agent's name") {
				t.Errorf("%s %s with Host %q: %d %+v, want 421 naming Host", c.method, c.path, host, code, eb)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("%s %s with Host %q: content type %q", c.method, c.path, host, ct)
			}
		}
	}
	if n := work.Load(); n != 0 {
		t.Errorf("status/licence computed %d times for refused hosts", n)
	}
	if n := pending(t, q); n != 0 {
		t.Errorf("refused hosts stored %d records", n)
	}
	for _, host := range []string{"127.0.0.1", "127.0.0.1:" + port, "localhost", "LocalHost:" + port, "[::1]", "[::1]:" + port, "[0:0:0:0:0:0:0:1]:" + port} {
		for _, c := range []hostCall{hostCalls[0], hostCalls[1], hostCalls[4]} {
			if code, eb, _ := call(t, addr, host, "", c); code != http.StatusOK {
				t.Errorf("%s %s with Host %q: %d %+v, want 200", c.method, c.path, host, code, eb)
			}
		}
	}
}

// TestHostAllowListWidened: a widened listen also serves the machine's
// host name and addresses and api.allowed_hosts, and still refuses other
// names.
func TestHostAllowListWidened(t *testing.T) {
	addr, _, _ := guarded(t, "0.0.0.0:8787", []string{"Kasa-7.magaza.local", "[fe80::1]"})
	_, port, _ := net.SplitHostPort(addr)
	allowed := []string{"localhost:" + port, "kasa-7.magaza.local", "KASA-7.MAGAZA.LOCAL:" + port, "[fe80::1]:" + port}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		allowed = append(allowed, hn, hn+":"+port)
	}
	if as, err := net.InterfaceAddrs(); err == nil {
		for _, a := range as {
			if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() && p.Addr().Is4() {
				allowed = append(allowed, p.Addr().String()+":"+port)
				break
			}
		}
	}
	for _, host := range allowed {
		if code, eb, _ := call(t, addr, host, "", hostCalls[4]); code != http.StatusOK {
			t.Errorf("widened, Host %q: %d %+v, want 200", host, code, eb)
		}
	}
	for _, host := range []string{"evil.example", "evil.example:" + port, "kasa-7.magaza.local.evil.example", "203.0.113.9:" + port} {
		if code, _, _ := call(t, addr, host, "", hostCalls[4]); code != http.StatusMisdirectedRequest {
			t.Errorf("widened, Host %q: %d, want 421", host, code)
		}
	}
}

// TestForeignOrigin: a call that changes state with an
// Origin that is not this server's is refused (403, JSON) and stores
// nothing; this server's own origins and no Origin at all are served; a
// call that only reads is not refused for its Origin. On the code before
// the guard the foreign POST was stored (202).
func TestForeignOrigin(t *testing.T) {
	addr, q, _ := guarded(t, "127.0.0.1:8787", nil)
	_, port, _ := net.SplitHostPort(addr)
	for _, origin := range []string{"http://evil.example", "https://evil.example:" + port, "null", "http://127.0.0.1.evil.example", "file://", "http://localhost:" + port + "/x"} {
		for _, c := range hostCalls {
			if c.method == "GET" {
				continue
			}
			code, eb, _ := call(t, addr, "127.0.0.1:"+port, origin, c)
			if code != http.StatusForbidden || eb.Field != "Origin" {
				t.Errorf("%s %s with Origin %q: %d %+v, want 403 naming Origin", c.method, c.path, origin, code, eb)
			}
		}
	}
	if n := pending(t, q); n != 0 {
		t.Fatalf("foreign origins stored %d records", n)
	}
	for i, origin := range []string{"", "http://127.0.0.1:" + port, "http://localhost:3000", "http://[::1]:" + port} {
		c := hostCalls[7]
		c.body = strings.Replace(c.body, `"2"`, `"o`+string(rune('0'+i))+`"`, 1)
		if code, eb, _ := call(t, addr, "127.0.0.1:"+port, origin, c); code != http.StatusAccepted {
			t.Errorf("POST with Origin %q: %d %+v, want 202", origin, code, eb)
		}
	}
	if code, _, _ := call(t, addr, "127.0.0.1:"+port, "http://evil.example", hostCalls[4]); code != http.StatusOK {
		t.Errorf("GET /v1/status with a foreign Origin: %d, want 200 (reading needs the token, which a page cannot send)", code)
	}
}

// TestHello: GET /v1/hello?nonce=N needs no token and answers
// hex(HMAC-SHA256(token, N)), computed here independently; a nonce out of
// bounds is 400.
func TestHello(t *testing.T) {
	addr, _, _ := guarded(t, "127.0.0.1:8787", nil)
	nonce := "9f86d081884c7d659a2feaa0c55ad015"
	resp, err := http.Get("http://" + addr + "/v1/hello?nonce=" + nonce)
	if err != nil {
		t.Fatal(err)
	}
	var h localapi.Hello
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(nonce))
	if want := hex.EncodeToString(m.Sum(nil)); resp.StatusCode != 200 || h.HMAC != want {
		t.Errorf("hello: %d %q, want 200 %q", resp.StatusCode, h.HMAC, want)
	}
	for _, q := range []string{"", "nonce=", "nonce=" + strings.Repeat("a", localapi.MaxNonce+1), "nonce=" + nonce + "&nonce=" + nonce, "nonce=" + strings.Repeat("a", 8000)} {
		resp, err := http.Get("http://" + addr + "/v1/hello?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var eb localapi.ErrorBody
		json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || eb.Field != "nonce" {
			t.Errorf("hello?%s: %d %+v, want 400 naming nonce", q, resp.StatusCode, eb)
		}
	}
}
