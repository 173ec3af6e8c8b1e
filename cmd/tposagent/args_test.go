package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/internal/config"
)

// fakeAgent is a local API that records the calls it gets and answers
// every one with an empty JSON object.
const fakeAgentToken = "args-test-token-0123456789"

type fakeAgent struct {
	mu    sync.Mutex
	calls []string
}

func (f *fakeAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/hello" { // the CLI proves the agent first (not counted as a call)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(localapi.Hello{HMAC: localapi.HelloMAC(fakeAgentToken, r.URL.Query().Get("nonce"))})
		return
	}
	f.mu.Lock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/outbox") && r.Method == "GET":
		w.Write([]byte(`{"state":"pending","items":[]}`))
	default:
		w.Write([]byte(`{}`))
	}
}

func (f *fakeAgent) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// agentConfig writes a config whose local API is srv.
func agentConfig(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	dir := t.TempDir()
	c := config.Default()
	c.DataDir = dir
	c.API.Listen = strings.TrimPrefix(srv.URL, "http://")
	c.API.Token = fakeAgentToken
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, config.Encode(&c), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestFlagsAfterArguments: a flag after a positional argument is parsed,
// not silently dropped; a command without positional arguments refuses
// one as a usage error before it calls the agent.
func TestFlagsAfterArguments(t *testing.T) {
	fa := &fakeAgent{}
	srv := httptest.NewServer(fa)
	t.Cleanup(srv.Close)
	cfg := agentConfig(t, srv)

	for _, c := range []struct {
		args  []string
		code  int
		calls []string // the agent's calls
		err   string   // in stderr
	}{
		{[]string{"status", "--json", "--config", cfg}, exitOK, []string{"GET /v1/status"}, ""},
		{[]string{"outbox", "list", "--config", cfg}, exitOK, []string{"GET /v1/outbox"}, ""},
		{[]string{"outbox", "--config", cfg, "dead"}, exitOK, []string{"GET /v1/outbox"}, ""},
		{[]string{"outbox", "retry", "7", "--config", cfg}, exitOK, []string{"POST /v1/outbox/7/retry"}, ""},
		{[]string{"outbox", "drop", "--config", cfg, "12"}, exitOK, []string{"DELETE /v1/outbox/12"}, ""},
		{[]string{"status", "extra", "--config", cfg}, exitUsage, nil, `unexpected argument "extra"`},
		{[]string{"license", "extra", "--config", cfg}, exitUsage, nil, `unexpected argument "extra"`},
		{[]string{"doctor", "extra", "--config", cfg}, exitUsage, nil, `unexpected argument "extra"`},
		{[]string{"status", "--config", cfg, "--", "--json"}, exitUsage, nil, `unexpected argument "--json"`},
		{[]string{"outbox", "retry", "abc", "--config", cfg}, exitUsage, nil, `"abc" is not a positive whole number`},
		{[]string{"outbox", "drop", "0", "--config", cfg}, exitUsage, nil, `"0" is not a positive whole number`},
		{[]string{"outbox", "retry", "7x", "--config", cfg}, exitUsage, nil, "not a positive whole number"},
		{[]string{"outbox", "retry", "--config", cfg, "--", "-5"}, exitUsage, nil, `"-5" is not a positive whole number`},
		{[]string{"outbox", "retry", "1", "2", "--config", cfg}, exitUsage, nil, "give one item ID"},
		{[]string{"outbox", "list", "extra", "--config", cfg}, exitUsage, nil, `unexpected argument "extra"`},
		{[]string{"outbox", "frob", "--config", cfg}, exitUsage, nil, `unknown action "frob"`},
	} {
		code, _, errOut := runCLI(t, c.args...)
		calls := fa.take()
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (%s)", c.args, code, c.code, errOut)
		}
		if strings.Join(calls, ",") != strings.Join(c.calls, ",") {
			t.Errorf("%q: agent calls %q, want %q", c.args, calls, c.calls)
		}
		if c.err != "" && !strings.Contains(errOut, c.err) {
			t.Errorf("%q: stderr %q, want %q", c.args, errOut, c.err)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 {
			t.Errorf("%q: stderr has %d lines, want one: %q", c.args, n+1, errOut)
		}
	}
}
