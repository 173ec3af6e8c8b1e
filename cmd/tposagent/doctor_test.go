package main

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/internal/till"
)

// TestDoctorRegistersAndNeedsTheAgent: doctor fails (exit 1) when the
// agent is not running; it checks TPOSL with the registration itself — a
// POST with the configured identity whose answer is decoded — so a server
// that refuses the registration is a failure even though it answers.
func TestDoctorRegistersAndNeedsTheAgent(t *testing.T) {
	f := newFixture(t)

	// No agent running.
	code, out, errOut := runCLI(t, "doctor", "--config", f.cfgPath, "--timeout", "5s")
	if code != exitError || !strings.Contains(out, "FAIL  agent") || !strings.Contains(out, "not running") {
		t.Errorf("doctor without the agent: exit %d, want %d and a FAIL line for the agent\n%s%s", code, exitError, out, errOut)
	}
	reqs := f.tposl.Requests()
	if len(reqs) != 1 {
		t.Fatalf("doctor sent %d registrations, want 1", len(reqs))
	}
	if p := reqs[0]; p.YKFiscalSeriNo != "JI20012345" || p.FirmaAdi != "Örnek Gıda A.Ş." || p.WebErisimKullanici != "e2e-kasa" {
		t.Errorf("doctor registered %q / %q / %q, want the configured identity", p.YKFiscalSeriNo, p.FirmaAdi, p.WebErisimKullanici)
	}
	if !strings.Contains(out, "ok    tposl") || !strings.Contains(out, "registered JI20012345") {
		t.Errorf("doctor does not report the registration:\n%s", out)
	}

	// The agent runs; the licence server answers, but refuses the till.
	f.start()
	testrig.WaitFor(t, "registration", 10*time.Second, func() bool { return f.tposl.Calls() > 1 })
	f.tposl.SetReturn(tposl.Return{Status: false, ErrorMessageCode: 12, ErrorMessage: "Kasa kaydı bulunamadı"})
	// A GET of the endpoint still gets an HTTP answer: it proves nothing.
	if resp, err := http.Get(f.tposl.URL()); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	before := f.tposl.Calls()
	code, out, _ = runCLI(t, "doctor", "--config", f.cfgPath, "--timeout", "5s")
	if code != exitError || !strings.Contains(out, "FAIL  tposl") || !strings.Contains(out, "refused") || !strings.Contains(out, "Kasa kaydı bulunamadı") {
		t.Errorf("doctor with a refused registration: exit %d, want %d and the server's reason\n%s", code, exitError, out)
	}
	if !strings.Contains(out, "ok    agent") {
		t.Errorf("doctor does not see the running agent:\n%s", out)
	}
	if f.tposl.Calls() <= before {
		t.Errorf("doctor did not call the licence server")
	}
	for _, s := range []string{e2eTPOSLPassword, e2eToken, f.oduyo.APIKey, f.oduyo.Password} {
		if strings.Contains(out, s) {
			t.Errorf("doctor printed a secret")
		}
	}
}

// TestDoctorWithoutOduyoURL: no oduyo.base_url is allowed (records are
// kept, not sent), so doctor warns about it and does not fail.
func TestDoctorWithoutOduyoURL(t *testing.T) {
	f := newFixture(t)
	f.cfg.Oduyo.BaseURL = ""
	if err := f.WriteConfig(&f.cfg); err != nil {
		t.Fatal(err)
	}
	f.start()
	// Doctor registers with the identity the agent read: wait for it.
	testrig.WaitFor(t, "registration", 10*time.Second, func() bool { return f.tposl.Calls() > 0 })
	code, out, errOut := runCLI(t, "doctor", "--config", f.cfgPath, "--timeout", "5s")
	if code != exitOK || !strings.Contains(out, "warn  oduyo     not checked: oduyo.base_url is not set") {
		t.Errorf("doctor without oduyo.base_url: exit %d, want %d and a warning\n%s%s", code, exitOK, out, errOut)
	}
	if strings.Contains(out, "FAIL") {
		t.Errorf("doctor without oduyo.base_url has a FAIL line:\n%s", out)
	}
}

// TestDoctorSaysTheOutboxCannotOpen: the real agent starts although its
// outbox file cannot be opened (here a directory is in its place), and
// doctor fails on it, saying why.
func TestDoctorSaysTheOutboxCannotOpen(t *testing.T) {
	f := newFixture(t)
	if err := os.MkdirAll(filepath.Join(f.DataDir(), "outbox.db", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	f.start()
	testrig.WaitFor(t, "registration", 10*time.Second, func() bool { return f.tposl.Calls() > 0 })
	code, out, errOut := runCLI(t, "doctor", "--config", f.cfgPath, "--timeout", "5s")
	if code != exitError || !strings.Contains(out, "FAIL  outbox") || !strings.Contains(out, "records are refused until the outbox file opens") {
		t.Errorf("doctor with an unopenable outbox: exit %d, want %d and a FAIL line for the outbox\n%s%s", code, exitError, out, errOut)
	}
	if !strings.Contains(out, "ok    agent") {
		t.Errorf("doctor does not see the running agent:\n%s", out)
	}
}

// TestBadConfigFailsAtStart: a [store] value the licence server would
// refuse, a duration out of bounds, a blank token or a huge file stops
// the real agent at start, with the key named, before anything runs.
func TestBadConfigFailsAtStart(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(c *config.Config)
		raw  string // the file instead, when set
		want string
	}{
		{"company_name", func(c *config.Config) { c.Store.CompanyName = strings.Repeat("Ş", 201) }, "", "store.company_name"},
		{"retry_max", func(c *config.Config) { c.Outbox.RetryMax = config.Duration{Duration: 100 * time.Hour} }, "", "outbox.retry_max"},
		{"blank token", func(c *config.Config) { c.API.Token = "   " }, "", "api.token"},
		{"huge file", nil, "# " + strings.Repeat("x", config.MaxFileSize), "larger than 1MiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			raw := []byte(c.raw)
			if c.edit != nil {
				c.edit(&f.cfg)
				raw = config.Encode(&f.cfg)
			}
			if err := os.WriteFile(f.cfgPath, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary, "run", "--config", f.cfgPath)
			cmd.Env = till.CleanEnv()
			t0 := time.Now()
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != exitError {
				t.Fatalf("run: %v, want exit %d\n%s", err, exitError, out)
			}
			if !strings.Contains(string(out), c.want) {
				t.Errorf("output does not name %q:\n%s", c.want, out)
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("took %v to refuse the config", d)
			}
			if f.tposl.Calls() != 0 {
				t.Errorf("the agent registered with a bad config")
			}
		})
	}
}
