package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
)

// evilText is what a hostile or broken server may say: it clears the
// screen, sets the window title, colours, writes a hyperlink, uses the C1
// CSI and a bidi override, and echoes the passwords.
func evilText(secrets ...string) string {
	return "\x1b[2J\x1b[H\x1b]0;pwned\x07Şifre yanlış \x1b[31m" + strings.Join(secrets, " ") +
		"\x1b[0m \x1b]8;;https://evil.example\x1b\\tıkla\x1b]8;;\x1b\\ \u009b1m\u202edone"
}

func noControls(t *testing.T, what, out string, secrets ...string) {
	t.Helper()
	for _, c := range []string{"\x1b", "\x07", "\u009b", "\u202e", `\u001b`, `\u0007`} {
		if strings.Contains(out, c) {
			t.Errorf("%s carries the control %q:\n%s", what, c, out)
		}
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s shows the secret %q:\n%s", what, s, out)
		}
	}
	if !strings.Contains(out, "Şifre yanlış") {
		t.Errorf("%s lost the server's words:\n%s", what, out)
	}
}

// TestCLIPrintsServerTextSafely: `tposagent status` and
// `tposagent license` (text and --json) printed a server's escape
// sequences raw and the password it echoed, as an agent that passes them
// on serves them (an earlier version does); now they print neither.
func TestCLIPrintsServerTextSafely(t *testing.T) {
	const tpPass, odPass, apiKey, token = "tposl-pw-Şifre-77", "erp-pw-123456", "oduyo-key-abcdef", "cli-token-0123456789abcdef"
	evil := evilText(tpPass, odPass, apiKey, token)
	lic := tposl.License{State: tposl.Unregistered, Message: "the licence server refused the registration: " + evil, ErrorMessage: evil, Source: tposl.SourceServer, CheckedAt: time.Now()}
	st := localapi.Status{License: lic, LastRegistrationError: evil, Warnings: []string{evil},
		Device: localapi.Device{FiscalSerial: "JI20012345", Source: "pos", Error: evil, Conflicting: map[string]string{"pos": evil}},
		Outbox: localapi.Outbox{LastError: evil}}
	cfg := fakeAgentWith(t, tpPass, odPass, apiKey, token, map[string]any{"/v1/status": st, "/v1/license": lic})
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"license"}, {"license", "--json"}, {"status", "--lang", "tr"}} {
		_, out, errOut := runCLI(t, append(args, "--config", cfg)...)
		noControls(t, strings.Join(args, " "), out+errOut, tpPass, odPass, apiKey, token)
	}
}

// TestDoctorPrintsServerTextSafely: doctor registers with the licence
// server itself and quotes its refusal; the escape sequences and the
// echoed passwords do not reach the terminal.
func TestDoctorPrintsServerTextSafely(t *testing.T) {
	f := newFixture(t)
	evil := evilText(e2eTPOSLPassword, f.oduyo.Password, f.oduyo.APIKey)
	f.tposl.SetReturn(tposl.Return{Status: false, ErrorMessageCode: 9, ErrorMessage: evil, BayiKodu: evil})
	_, out, errOut := runCLI(t, "doctor", "--config", f.cfgPath, "--timeout", "5s")
	noControls(t, "doctor", out+errOut, e2eTPOSLPassword, f.oduyo.Password, f.oduyo.APIKey)
	if !strings.Contains(out, "[redacted]") {
		t.Errorf("doctor does not show where the secret was:\n%s", out)
	}
}

// TestCLIListsServerTextSafely: the same check for the other paths that
// print a server's words: `outbox list`/`outbox dead` (text and --json)
// show a record's last error and dead reason, which quote Ödüyo (its own
// secrets are redacted by the client, another server's or the API token
// are not), and `device set` shows the device's error and the other
// sources' values. On the code before this test all of them printed the
// escape sequences and the echoed secrets raw.
func TestCLIListsServerTextSafely(t *testing.T) {
	const tpPass, odPass, apiKey, token = "tposl-pw-Şifre-77", "erp-pw-123456", "oduyo-key-abcdef", "cli-token-0123456789abcdef"
	evil := evilText(tpPass, odPass, apiKey, token)
	it := localapi.ItemView{ID: 1, Kind: localapi.KindKasa, Key: "k1", Created: time.Now(), LastError: evil, DeadReason: evil,
		Payload: json.RawMessage(`{"id":1}`)}
	dev := localapi.Device{FiscalSerial: "JI20012345", Source: "pos", Error: evil, Conflict: true, Conflicting: map[string]string{"device": evil}}
	cfg := fakeAgentWith(t, tpPass, odPass, apiKey, token, map[string]any{"/v1/outbox": map[string]any{"items": []localapi.ItemView{it}}, "/v1/device": dev})
	for _, args := range [][]string{{"outbox", "list"}, {"outbox", "dead"}, {"outbox", "dead", "--json"}, {"device", "set", "--fiscal-serial", "JI20012345"}} {
		_, out, errOut := runCLI(t, append(args, "--config", cfg)...)
		noControls(t, strings.Join(args, " "), out+errOut, tpPass, odPass, apiKey, token)
	}
}

// TestBugreportRedactsJSONForms: a secret with characters JSON escapes
// ("&", "<", `"`) quoted by a server reaches outbox-dead.json escaped;
// the bundle replaces that form too (before, only the raw one).
func TestBugreportRedactsJSONForms(t *testing.T) {
	const pw = `pw&<"x>9`
	b := &bundle{secrets: []string{pw, "ab"}}
	enc, _ := json.Marshal(map[string]string{"dead_reason": "server said: " + pw})
	got := string(b.redact(enc))
	esc, _ := json.Marshal(pw)
	if strings.Contains(got, pw) || strings.Contains(got, string(esc[1:len(esc)-1])) || !strings.Contains(got, "[redacted]") {
		t.Errorf("redacted bundle file still quotes the secret: %s", got)
	}
	if got := string(b.redact([]byte("ab cd"))); got != "[redacted] cd" {
		t.Errorf("a short secret is no longer redacted: %q", got)
	}
}

// fakeAgentWith serves a local API that proves itself with token and
// answers each path of answers with its JSON (404 otherwise), and writes a
// config that names it and the given secrets; it returns the config path.
func fakeAgentWith(t *testing.T, tpPass, odPass, apiKey, token string, answers map[string]any) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/v1/hello" { // the CLI proves the agent before it sends the token
			_ = json.NewEncoder(w).Encode(localapi.Hello{HMAC: localapi.HelloMAC(token, r.URL.Query().Get("nonce"))})
			return
		}
		v, ok := answers[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(srv.Close)
	cfg := filepath.Join(t.TempDir(), "config.toml")
	body := fmt.Sprintf("[tposl]\npassword = %q\n[oduyo]\npassword = %q\napi_key = %q\n[api]\nlisten = %q\ntoken = %q\n",
		tpPass, odPass, apiKey, strings.TrimPrefix(srv.URL, "http://"), token)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}
