package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/testrig"
)

// TestStatusShowsServerTextSafely: A licence server that
// echoes the password (and any other configured secret) in its error text
// and adds escape sequences got both into /v1/status and /v1/license — and
// so into `tposagent status` — on the old code (only the log, the status
// page and bugreport scrubbed secrets). Now neither answer carries a
// secret or a control character; the server's words stay.
func TestStatusShowsServerTextSafely(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	cfg := testConfig(t, tp, od)
	cfg.TPOSL.Interval.Duration = time.Hour
	secrets := []string{cfg.TPOSL.Password.Reveal(), cfg.Oduyo.Password.Reveal(), cfg.Oduyo.APIKey.Reveal(), cfg.API.Token.Reveal()}
	tp.SetReturn(tposl.Return{Status: false, ErrorMessageCode: 4, ErrorMessage: "\x1b]0;pwned\x07\x1b[2JŞifre yanlış: " + secrets[0] +
		" (erp " + secrets[1] + ", key " + secrets[2] + ", token " + secrets[3] + ")\x1b[31m\u009b1m", BayiKodu: "B\x1b[5m7"})
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, a)
	defer stop()
	testrig.WaitFor(t, "the refusal", 10*time.Second, func() bool { return a.License().State == tposl.Unregistered })

	for _, path := range []string{"/v1/status", "/v1/license"} {
		code, body := call(t, a, "GET", path, "")
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, body)
		}
		text := string(body)
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the secret %q: %s", path, s, text)
			}
		}
		for _, c := range []string{`\u001b`, "\x1b", `\u0007`, "\u009b", `\u009b`} {
			if strings.Contains(text, c) {
				t.Errorf("%s carries the control %q: %s", path, c, text)
			}
		}
		if !strings.Contains(text, "Şifre yanlış: [redacted] (erp [redacted], key [redacted], token [redacted])") {
			t.Errorf("%s lost the server's words: %s", path, text)
		}
	}
	if l := a.License(); l.DealerCode != "B7" {
		t.Errorf("dealer code %q", l.DealerCode)
	}
}
