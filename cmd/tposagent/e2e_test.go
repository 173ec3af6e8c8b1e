package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/agenttest"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/config"
)

// binary is the real tposagent, built once for the subprocess tests.
var binary string

func TestMain(m *testing.M) {
	bin, cleanup, err := agenttest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// fixture is a till on loopback: simulated ÖKC, fake servers, a config.
type fixture struct {
	t       *testing.T
	dir     string
	cfg     config.Config
	cfgPath string
	sim     *devicetest.Sim
	tposl   *tposltest.Server
	oduyo   *oduyotest.Server
	proc    *exec.Cmd
	exited  chan error
	stderr  *bytes.Buffer
	client  *localapi.Client
}

const (
	e2eTPOSLPassword = "e2e-tposl-Şifre-2231"
	e2eToken         = "e2e-token-6c1f0b8e9a7d4c21"
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir()}
	port := "none"
	sim, err := devicetest.Start(devicetest.Options{FiscalSerial: "JI20012345", ECRSerial: "JHWE20000079", Brand: "INGENICO", Model: "IWE280"})
	if err == nil {
		f.sim, port = sim, sim.Port()
		t.Cleanup(func() { sim.Close() })
	} else {
		t.Logf("no simulated device (%v): using port none", err)
	}
	f.tposl = tposltest.NewServer()
	t.Cleanup(f.tposl.Close)
	f.oduyo = oduyotest.NewServer()
	t.Cleanup(f.oduyo.Close)
	now := time.Now()
	f.tposl.SetReturn(tposl.Return{Status: true, Aktif: 1, GMP3Status: 1, GMP3ExpDate: now.AddDate(0, 0, 50).Format("2006-01-02"),
		DemoLisansGun: 30, DemoBasTarih: now.AddDate(0, 0, -10).Format("2006-01-02"), OnayFiscalSeriNo: "JI20012345"})

	c := config.Default()
	c.DataDir = "data" // relative: to the config file
	c.Store = config.Store{TaxNumber: "1234567890", TaxOffice: "Kadıköy", CompanyName: "Örnek Gıda A.Ş.", PosNo: 3, PosType: 1, ReceiptLimit: "5000"}
	c.TPOSL.URL, c.TPOSL.Username, c.TPOSL.Password = f.tposl.URL(), "e2e-kasa", e2eTPOSLPassword
	f.tposl.SetCredentials("e2e-kasa", e2eTPOSLPassword)
	c.Oduyo.BaseURL, c.Oduyo.Username = f.oduyo.URL(), f.oduyo.Username
	c.Oduyo.APIKey, c.Oduyo.Password = config.Secret(f.oduyo.APIKey), config.Secret(f.oduyo.Password)
	c.Device.Port = port
	if port == "none" {
		c.Device.FiscalSerial = "JI20012345"
	}
	c.API.Listen = "127.0.0.1:0"
	c.API.Token = e2eToken
	c.Outbox.RetryMax = config.Duration{Duration: time.Second}
	c.Outbox.ReconnectJitter = config.Duration{Duration: 200 * time.Millisecond}
	c.Log.Level = "debug"
	f.cfg = c
	f.cfgPath = filepath.Join(f.dir, "config.toml")
	if err := os.WriteFile(f.cfgPath, config.Encode(&c), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.kill() })
	return f
}

// start runs the real binary and waits until its local API answers.
func (f *fixture) start() time.Duration {
	f.t.Helper()
	os.Remove(filepath.Join(f.dir, "data", agent.APIAddrFile))
	f.stderr = &bytes.Buffer{}
	cmd := exec.Command(binary, "run", "--config", f.cfgPath)
	cmd.Stderr = f.stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.proc, f.exited = cmd, make(chan error, 1)
	go func() { f.exited <- cmd.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := apiClient(&env{configPath: f.cfgPath}); err == nil {
			if _, err := c.Status(context.Background()); err == nil {
				f.client = c
				return time.Since(t0)
			}
		}
		select {
		case err := <-f.exited:
			f.t.Fatalf("agent exited at start: %v\n%s", err, f.stderr)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("local API did not answer within 10 s\n%s", f.stderr)
		}
	}
}

func (f *fixture) kill() {
	if f.proc == nil {
		return
	}
	f.proc.Process.Kill()
	<-f.exited
	f.proc = nil
}

// stop sends SIGINT and returns how long the agent took to exit.
func (f *fixture) stop() time.Duration {
	f.t.Helper()
	t0 := time.Now()
	if err := interruptProcess(f.proc.Process); err != nil {
		f.kill()
		return 0
	}
	select {
	case err := <-f.exited:
		f.proc = nil
		if err != nil {
			f.t.Errorf("agent exit after SIGINT: %v\n%s", err, f.stderr)
		}
	case <-time.After(10 * time.Second):
		f.t.Fatalf("agent did not stop within 10 s of SIGINT")
	}
	return time.Since(t0)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

	// Registration with the fields DESIGN.md's source table gives.
	waitFor(t, "registration", 15*time.Second, func() bool { return f.tposl.Calls() > 0 && len(f.tposl.Requests()) > 0 })
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
	if f.sim != nil {
		checks["POS_SERI_NO"] = [2]string{p.PosSeriNo, "JHWE20000079"}
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
	waitFor(t, "licence from the server", 10*time.Second, func() bool {
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
	waitFor(t, "the queue to drain", 30*time.Second, func() bool {
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
	texts := map[string][]byte{"agent stderr": f.stderr.Bytes()}
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
	for _, auth := range []string{"", "Bearer", "Bearer wrong-token-0000000000", "Basic " + e2eToken, "bearer " + e2eToken} {
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
	waitFor(t, "registration", 10*time.Second, func() bool { return f.tposl.Calls() > 0 })
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
