package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/internal/till"
)

// binary is the real tposagent, built once for the subprocess tests.
var binary string

func TestMain(m *testing.M) {
	bin, cleanup, err := till.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// fixture is a till on loopback: simulated ÖKC, fake servers, a config,
// and the agent run by the shared real-binary harness (internal/till).
type fixture struct {
	*till.Till
	t       *testing.T
	dir     string
	cfg     config.Config
	cfgPath string
	sim     *devicetest.Sim
	tposl   *tposltest.Server
	oduyo   *oduyotest.Server
	client  *localapi.Client
}

const (
	e2eTPOSLPassword = "e2e-tposl-Şifre-2231"
	e2eToken         = "e2e-token-6c1f0b8e9a7d4c21"
)

func newFixture(t *testing.T) *fixture {
	return newFixtureWith(t, &devicetest.Options{FiscalSerial: "JI20012345"})
}

// newFixtureWith: a fixture whose simulated ÖKC has opts (on a pty where
// there are some, else TCP); nil opts: no device, port "none".
func newFixtureWith(t *testing.T, opts *devicetest.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir()}
	port := "none"
	if opts != nil {
		sim, err := devicetest.StartAny(*opts)
		if err != nil {
			t.Fatalf("simulated device: %v", err)
		}
		f.sim, port = sim, sim.Port()
		t.Cleanup(func() { sim.Close() })
	}
	f.tposl = tposltest.NewServer()
	t.Cleanup(f.tposl.Close)
	f.oduyo = oduyotest.NewServer()
	t.Cleanup(f.oduyo.Close)
	now := time.Now()
	f.tposl.SetReturn(tposl.Return{Status: true, Aktif: 1, GMP3Status: 1, GMP3ExpDate: now.AddDate(0, 0, 50).Format("2006-01-02"),
		DemoLisansGun: 30, DemoBasTarih: now.AddDate(0, 0, -10).Format("2006-01-02"), OnayFiscalSeriNo: "JI20012345"})

	f.tposl.SetCredentials("e2e-kasa", e2eTPOSLPassword)
	c := till.Config("data", till.Servers{TPOSLURL: f.tposl.URL(), TPOSLUser: "e2e-kasa", TPOSLPassword: e2eTPOSLPassword, // data: relative to the config file
		OduyoURL: f.oduyo.URL(), OduyoUser: f.oduyo.Username, OduyoAPIKey: f.oduyo.APIKey, OduyoPassword: f.oduyo.Password, Token: e2eToken})
	c.Store.PosNo = 3
	c.Device.Port, c.Device.FiscalSerial = port, ""
	c.Device.AckTimeout = config.Duration{Duration: 500 * time.Millisecond}
	c.Device.ProbeBudget = config.Duration{Duration: 5 * time.Second}
	c.Outbox.ReconnectJitter = config.Duration{Duration: 200 * time.Millisecond}
	f.cfg = c
	f.cfgPath = filepath.Join(f.dir, "config.toml")
	tl, err := till.New(&c, till.Options{Binary: binary, ConfigPath: f.cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	f.Till = tl
	t.Cleanup(f.kill)
	return f
}

// start runs the real binary and waits until its local API answers; it
// returns how long that took. The client is the CLI's own (apiClient), so
// the tests go through the same address discovery as a user.
func (f *fixture) start() time.Duration {
	f.t.Helper()
	d, err := f.Start(context.Background(), 10*time.Second)
	if err != nil {
		f.t.Fatal(err)
	}
	c, err := apiClient(&env{configPath: f.cfgPath})
	if err != nil {
		f.t.Fatal(err)
	}
	f.client = c
	return d
}

func (f *fixture) kill() { f.Kill() }

// stop asks the agent to stop as its service manager does and returns how
// long it took to exit; 0 where nothing can ask it (the agent was killed).
func (f *fixture) stop() time.Duration {
	f.t.Helper()
	d, err := f.Stop(10 * time.Second)
	switch {
	case errors.Is(err, till.ErrCannotInterrupt):
		return 0
	case err != nil:
		f.t.Errorf("agent stop: %v\n%s", err, f.Output())
	}
	return d
}

func TestEndToEnd(t *testing.T) {
	f := newFixture(t)
	startup := f.start()
	t.Logf("local API answered %v after start", startup)
	// A service manager (Windows' SCM above all) expects a start to return
	// within a second; registration and device probing run in the background.
	if startup > time.Second {
		t.Errorf("local API answered %v after start, want within 1 s", startup)
	}
	ctx := context.Background()

	// Registration with the fields the source table of docs/protocols.md gives.
	testrig.WaitFor(t, "registration", 15*time.Second, func() bool { return f.tposl.Calls() > 0 && len(f.tposl.Requests()) > 0 })
	p := f.tposl.Requests()[0]
	host, _ := os.Hostname()
	checks := map[string][2]string{
		"YK_FISCAL_SERI_NO":  {p.YKFiscalSeriNo, "JI20012345"},
		"VERGI_DAIRESI":      {p.VergiDairesi, "Kadıköy"},
		"FIRMA_ADI":          {p.FirmaAdi, "Örnek Gıda A.Ş."},
		"PC_NAME":            {p.PCName, host},
		"VERSIYON":           {p.Versiyon, agent.Version},
		"WebErisimKullanici": {p.WebErisimKullanici, "e2e-kasa"},
		"WebErisimSifre":     {p.WebErisimSifre, e2eTPOSLPassword},
	}
	for field, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", field, c[0], c[1])
		}
	}
	if _, err := time.Parse("2006-01-02 15:04:05", p.KasaTarihSaat); err != nil {
		t.Errorf("KASA_TARIH_SAAT %q: %v", p.KasaTarihSaat, err)
	}
	if p.PosNo != 3 || p.DonemYili != time.Now().Year() {
		t.Errorf("POS_NO %d DONEM_YILI %d", p.PosNo, p.DonemYili)
	}

	// The licence at /v1/license, and the CLI's exit code.
	var lic tposl.License
	testrig.WaitFor(t, "licence from the server", 10*time.Second, func() bool {
		l, err := f.client.License(ctx)
		lic = l
		return err == nil && l.Source == tposl.SourceServer
	})
	if lic.State != tposl.Demo || lic.DaysLeft != 20 || !lic.GMP3.Active || lic.GMP3.DaysLeft != 50 {
		t.Errorf("licence = %+v, want demo with 20 days left, GMP3 active 50 days", lic)
	}
	var out, errOut bytes.Buffer
	e := &env{stdout: &out, stderr: &errOut, stdin: strings.NewReader("")}
	if code := report(e.stderr, run(ctx, e, []string{"--config", f.cfgPath, "license"})); code != exitOK {
		t.Errorf("tposagent license exit %d, want 0 (%s)", code, errOut.String())
	}

	// Ödüyo goes down; 200 records go in around a kill -9.
	f.oduyo.SetDown(true)
	const n = 200
	enqueue := func(i int) {
		var path string
		var col map[string]any
		if i%2 == 0 { // kasa: 20 cards, 5 updates each; every update names its sequence
			path = "/v1/kasa"
			col = map[string]any{"integration_id": fmt.Sprintf("card-%02d", i%40/2), "status": "1", "note": fmt.Sprint(i), "balance": fmt.Sprintf("%d,50", i)}
		} else {
			path = "/v1/special-codes"
			col = map[string]any{"integration_id": fmt.Sprintf("code-%03d", i), "code": "Ğ" + fmt.Sprint(i), "status": "1"}
		}
		b, _ := json.Marshal(col)
		if _, err := f.client.Enqueue(ctx, path, b); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
	}
	for i := 0; i < n/2; i++ {
		enqueue(i)
	}
	f.kill()
	f.start()
	for i := n / 2; i < n; i++ {
		enqueue(i)
	}
	f.oduyo.SetDown(false)
	testrig.WaitFor(t, "the queue to drain", 30*time.Second, func() bool {
		s, err := f.client.Status(ctx)
		return err == nil && s.Outbox.Pending == 0 && s.Outbox.InFlight == 0
	})

	// Every special code delivered; every card's last update delivered, in order.
	lastNote := map[string]int{}
	codes := map[string]bool{}
	for _, d := range f.oduyo.Delivered() {
		var col map[string]any
		json.Unmarshal(d.Column, &col)
		switch d.Kind {
		case oduyotest.KindSpecialCode:
			codes[d.IntegrationID] = true
		case oduyotest.KindKasa:
			var seq int
			fmt.Sscan(col["note"].(string), &seq)
			if prev, ok := lastNote[d.IntegrationID]; ok && seq < prev {
				t.Errorf("card %s: update %d delivered after %d", d.IntegrationID, seq, prev)
			}
			lastNote[d.IntegrationID] = seq
		}
	}
	for i := 0; i < n; i++ {
		if i%2 == 1 && !codes[fmt.Sprintf("code-%03d", i)] {
			t.Errorf("special code code-%03d lost", i)
		}
	}
	for c := 0; c < 20; c++ {
		card := fmt.Sprintf("card-%02d", c)
		// The updates of card c are i = 2c + 40k, k = 0..4.
		if got, want := lastNote[card], 2*c+160; got != want {
			t.Errorf("%s: last delivered update %d, want %d", card, got, want)
		}
	}

	// Stop cleanly, within 5 s.
	if d := f.stop(); d > 5*time.Second {
		t.Errorf("stop took %v, want ≤ 5 s", d)
	}
	f.scanSecrets(t)
}

// scanSecrets fails if any configured secret or session id appears in the
// agent's stderr or any file it wrote (the config file holds them by design).
func (f *fixture) scanSecrets(t *testing.T) {
	t.Helper()
	secrets := append([]string{e2eTPOSLPassword, e2eToken, f.oduyo.APIKey, f.oduyo.Password}, f.oduyo.Sessions()...)
	texts := map[string][]byte{"agent stderr": bytes.Join(f.Outputs(), nil)}
	filepath.Walk(f.dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && path != f.cfgPath {
			b, _ := os.ReadFile(path)
			texts[path] = b
		}
		return nil
	})
	for name, b := range texts {
		for _, s := range secrets {
			if s != "" && bytes.Contains(b, []byte(s)) {
				t.Errorf("secret %q… found in %s", s[:3], name)
			}
		}
	}
}

func TestAPIRefusesBadToken(t *testing.T) {
	f := newFixture(t)
	f.start()
	for _, auth := range []string{"", "Bearer", "Bearer wrong-token-0000000000", "Basic " + e2eToken, "bearer " + e2eToken + "x"} {
		req, _ := http.NewRequest("GET", f.client.BaseURL+"/v1/status", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d, want 401", auth, resp.StatusCode)
		}
	}
}

func TestSecondAgentFailsFast(t *testing.T) {
	f := newFixture(t)
	f.start()
	t0 := time.Now()
	out, err := exec.Command(binary, "run", "--config", f.cfgPath).CombinedOutput()
	if err == nil {
		t.Fatal("a second agent on the same data dir started")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("second agent took %v to fail", d)
	}
	if !strings.Contains(string(out), "already running") {
		t.Errorf("message %q does not say another agent is running", out)
	}
}

func TestDemoRunsAndLeaksNoSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo takes a few seconds")
	}
	dir := t.TempDir()
	cmd := exec.Command(binary, "demo", "--dir", dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if d := time.Since(t0); d > time.Minute {
		t.Errorf("demo took %v, want < 1 min", d)
	}
	for _, want := range []string{"lost", "Summary", "coalesced", "licence: demo"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	cfg, err := config.Read(filepath.Join(dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{cfg.TPOSL.Password.Reveal(), cfg.Oduyo.Password.Reveal(), cfg.Oduyo.APIKey.Reveal(), cfg.API.Token.Reveal()}
	texts := map[string][]byte{"demo output": out.Bytes()}
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && filepath.Base(path) != "config.toml" {
			b, _ := os.ReadFile(path)
			texts[path] = b
		}
		return nil
	})
	scanned := 0
	for name, b := range texts {
		scanned += len(b)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("secret %q… found in %s", s[:3], name)
			}
		}
	}
	t.Logf("scanned %d files, %d bytes, for %d secrets", len(texts), scanned, len(secrets))
}

func TestDoctor(t *testing.T) {
	f := newFixture(t)
	f.start()
	testrig.WaitFor(t, "registration", 10*time.Second, func() bool { return f.tposl.Calls() > 0 })
	code, out, errOut := runCLI(t, "doctor", "--config", f.cfgPath)
	if code != exitOK {
		t.Fatalf("doctor on a healthy till: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"ok    config", "ok    agent", "ok    oduyo login", "ok    clock"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	f.oduyo.SetDown(true)
	code, out, _ = runCLI(t, "doctor", "--config", f.cfgPath, "--timeout", "2s")
	if code != exitError || !strings.Contains(out, "FAIL  oduyo") || !strings.Contains(out, "cannot reach") {
		t.Errorf("doctor with Ödüyo down: exit %d\n%s", code, out)
	}
	for _, s := range []string{e2eTPOSLPassword, e2eToken, f.oduyo.APIKey, f.oduyo.Password} {
		if strings.Contains(out, s) {
			t.Errorf("doctor printed a secret")
		}
	}
}
