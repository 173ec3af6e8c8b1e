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

// TestCLIPrintsServerTextSafely: issue 23 (10). `tposagent status` and
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/hello": // the CLI proves the agent before it sends the token
			_ = json.NewEncoder(w).Encode(localapi.Hello{HMAC: localapi.HelloMAC(token, r.URL.Query().Get("nonce"))})
		case "/v1/status":
			_ = json.NewEncoder(w).Encode(st)
		case "/v1/license":
			_ = json.NewEncoder(w).Encode(lic)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cfg := filepath.Join(t.TempDir(), "config.toml")
	body := fmt.Sprintf("[tposl]\npassword = %q\n[oduyo]\npassword = %q\napi_key = %q\n[api]\nlisten = %q\ntoken = %q\n",
		tpPass, odPass, apiKey, strings.TrimPrefix(srv.URL, "http://"), token)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
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
