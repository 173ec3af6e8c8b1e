package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/internal/testrig"
)

// Tests of what the agent shows people: the CLI in Turkish and English,
// the status page opened in a browser, and the bug report.

// runCLIEnv runs the CLI with the given environment variables visible to
// it (and no others of the locale).
func runCLIEnv(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, lookupEnv: func(k string) (string, bool) {
		v, ok := environ[k]
		return v, ok
	}}
	code = report(e.stderr, run(context.Background(), e, args))
	return code, out.String(), errb.String()
}

func TestCLILanguage(t *testing.T) {
	f := newFixture(t)
	f.start()
	testrig.WaitFor(t, "licence from the server", 15*time.Second, func() bool {
		l, err := f.client.License(context.Background())
		return err == nil && l.Source == "server"
	})
	// The outbox's probe at start waits a random part of the reconnect
	// jitter (200 ms here): "online" shows after it.
	testrig.WaitFor(t, "oduyo online", 15*time.Second, func() bool {
		s, err := f.client.Status(context.Background())
		return err == nil && s.Online
	})
	tr := map[string]string{"LANG": "tr_TR.UTF-8"}
	en := map[string]string{"LANG": "en_US.UTF-8"}
	// The same facts in both languages: state, days, serial, counts.
	tests := []struct {
		name    string
		environ map[string]string
		args    []string
		want    []string
	}{
		{"status LANG=tr", tr, []string{"status"}, []string{"Kayıt", "kayıtlı", "Lisans", "Demo lisans: 20 gün kaldı", "GMP3 modülü", "etkin, 50 gün kaldı", "Cihaz", "JI20012345", "Kuyruk", "0 bekliyor", "Ödüyo", "çevrimiçi", "Ajan"}},
		{"status --lang tr", en, []string{"status", "--lang", "tr"}, []string{"Demo lisans: 20 gün kaldı", "0 bekliyor"}},
		{"global --lang tr", en, []string{"--lang", "tr", "status"}, []string{"Demo lisans: 20 gün kaldı"}},
		{"status LANG=en", en, []string{"status"}, []string{"Registration", "registered", "Licence", "demo licence: 20 days left", "GMP3 module", "active, 50 days left", "Device", "JI20012345", "0 pending", "online", "Agent"}},
		{"status no locale", nil, []string{"status"}, []string{"Licence"}},
		{"status LANG=C", map[string]string{"LANG": "C.UTF-8"}, []string{"status"}, []string{"Licence"}},
		{"LC_ALL wins", map[string]string{"LANG": "en_US.UTF-8", "LC_ALL": "tr_TR.UTF-8"}, []string{"status"}, []string{"Lisans"}},
		{"license tr", tr, []string{"license"}, []string{"Demo lisans: 20 gün kaldı", "kontrol:"}},
		{"license en", en, []string{"license"}, []string{"demo licence: 20 days left"}},
		{"doctor tr", tr, []string{"doctor", "--timeout", "5s"}, []string{"tamam", "yapılandırma", "geçerli", "ajan", "çalışıyor", "oduyo girişi", "kimlik bilgileri kabul edildi"}},
		{"doctor en", en, []string{"doctor", "--timeout", "5s"}, []string{"ok    config", "is valid", "ok    agent", "credentials accepted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLIEnv(t, tt.environ, append(tt.args, "--config", f.cfgPath)...)
			if code != exitOK {
				t.Fatalf("exit %d: %s%s", code, out, errOut)
			}
			t.Logf("%s", out)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, s := range []string{e2eTPOSLPassword, e2eToken, f.oduyo.APIKey, f.oduyo.Password} {
				if strings.Contains(out+errOut, s) {
					t.Error("output shows a secret")
				}
			}
		})
	}
	// --json has no language: the same document under both locales.
	_, jtr, _ := runCLIEnv(t, tr, "status", "--json", "--lang", "tr", "--config", f.cfgPath)
	_, jen, _ := runCLIEnv(t, en, "status", "--json", "--config", f.cfgPath)
	var a, b map[string]any
	if json.Unmarshal([]byte(jtr), &a) != nil || json.Unmarshal([]byte(jen), &b) != nil {
		t.Fatalf("--json is not JSON:\n%s\n%s", jtr, jen)
	}
	for _, k := range []string{"registered", "online", "version"} {
		if a[k] != b[k] {
			t.Errorf("--json %s differs: %v vs %v", k, a[k], b[k])
		}
	}
	if la, lb := a["license"].(map[string]any), b["license"].(map[string]any); la["state"] != "demo" || la["state"] != lb["state"] || la["message"] != lb["message"] {
		t.Errorf("--json licence differs by language: %v vs %v", la, lb)
	}
	if code, _, errOut := runCLIEnv(t, tr, "status", "--lang", "de", "--config", f.cfgPath); code != exitUsage || !strings.Contains(errOut, "want tr or en") {
		t.Errorf("--lang de: exit %d %q, want a usage error", code, errOut)
	}
	// Logs stay English whatever the locale of the agent or the CLI.
	log, err := os.ReadFile(filepath.Join(f.dir, "data", "tposagent.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "tposagent started") || strings.Contains(string(log), "Lisans") || strings.Contains(string(log), "bekliyor") {
		t.Errorf("log is not the English one:\n%s", tailString(string(log), 1500))
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func TestOpen(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the fake browser is a shell script")
	}
	f := newFixture(t)
	f.start()
	// A browser that writes down what it was asked to open.
	dir := t.TempDir()
	got := filepath.Join(dir, "opened")
	script := filepath.Join(dir, "browser")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s' \"$1\" > "+got+".tmp && mv "+got+".tmp "+got+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLIEnv(t, map[string]string{"BROWSER": script, "LANG": "tr_TR.UTF-8"}, "open", "--config", f.cfgPath)
	if code != exitOK {
		t.Fatalf("open: exit %d %s%s", code, out, errOut)
	}
	var url []byte
	testrig.WaitFor(t, "the browser to be started", 10*time.Second, func() bool {
		var err error
		url, err = os.ReadFile(got)
		return err == nil
	})
	if !strings.HasPrefix(string(url), f.client.BaseURL+"/?lang=tr") || strings.TrimSpace(out) != string(url) {
		t.Errorf("browser opened %q (printed %q), want the status page of %s in Turkish", url, out, f.client.BaseURL)
	}
	resp, err := http.Get(string(url))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Kasa ajanı") {
		t.Errorf("the opened address answers %d:\n%.300s", resp.StatusCode, page)
	}
	if code, out, _ := runCLIEnv(t, nil, "open", "--print", "--lang", "en", "--config", f.cfgPath); code != exitOK || strings.TrimSpace(out) != f.client.BaseURL+"/?lang=en" {
		t.Errorf("open --print: exit %d %q", code, out)
	}
	f.stop()
	if code, _, errOut := runCLIEnv(t, nil, "open", "--print", "--config", f.cfgPath); code != exitError || !strings.Contains(errOut, "no tposagent is running") {
		t.Errorf("open without an agent: exit %d %q", code, errOut)
	}
}

// readZip returns the files of a zip by name.
func readZip(t *testing.T, path string) map[string][]byte {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	files := map[string][]byte{}
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[zf.Name] = b
	}
	return files
}

func TestBugreport(t *testing.T) {
	f := newFixture(t)
	f.oduyo.Reject("code-refused")
	f.start()
	ctx := context.Background()
	// One record Ödüyo refuses, so there is a dead letter with a reason.
	if _, err := f.client.Enqueue(ctx, "/v1/special-codes", []byte(`{"integration_id":"code-refused","code":"Ş1"}`)); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "the dead letter and the licence", 15*time.Second, func() bool {
		s, err := f.client.Status(ctx)
		return err == nil && s.Outbox.Dead == 1 && s.License.Source == "server"
	})
	// The POS reports its device and port: both bundles show the port and
	// the report's age.
	if _, err := f.client.ReportDevice(ctx, localapi.DeviceReport{FiscalSerial: "JI20012345", Port: "COM3"}); err != nil {
		t.Fatal(err)
	}
	// A device trace in the data dir that (wrongly) holds a secret: the
	// zip must still not contain it.
	trace := "# port /dev/ttyUSB0\n0.000100 tx 02000f\n# note: token " + e2eToken + "\n0.004000 rx 06\n"
	if err := os.WriteFile(filepath.Join(f.dir, "data", "probe.trace"), []byte(trace), 0o600); err != nil { // given with --trace
		t.Fatal(err)
	}
	secrets := []string{e2eTPOSLPassword, e2eToken, f.oduyo.APIKey, f.oduyo.Password}

	planted := filepath.Join(f.dir, "data", "probe.trace")
	check := func(t *testing.T, path string, running bool) map[string][]byte {
		files := readZip(t, path)
		for _, name := range []string{"README.txt", "config.toml", "version.txt", "os.txt", "log-tail.txt", "status.json", "license.json",
			"device.json", "outbox-stats.json", "outbox-dead.json", "doctor.txt", "device-trace.txt", "data-dir.txt"} {
			if len(files[name]) == 0 {
				t.Errorf("zip lacks %s (has %d files)", name, len(files))
			}
		}
		found := 0
		for name, data := range files {
			for _, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					found++
					t.Errorf("%s contains a configured secret", name)
				}
			}
		}
		t.Logf("RESULT bugreport running=%v files=%d secrets_scanned=%d found=%d", running, len(files), len(secrets), found)
		var dead []map[string]any
		if err := json.Unmarshal(files["outbox-dead.json"], &dead); err != nil || len(dead) != 1 || dead[0]["key"] != "special_code:code-refused" || dead[0]["dead_reason"] == "" {
			t.Errorf("outbox-dead.json: %s (%v)", files["outbox-dead.json"], err)
		}
		var st map[string]any
		if err := json.Unmarshal(files["status.json"], &st); err != nil || !running && (st["running"] != false || st["outbox"] == nil || st["license"] == nil) {
			t.Errorf("status.json (agent running %v): %.300s (%v)", running, files["status.json"], err)
		}
		var lic map[string]any
		if err := json.Unmarshal(files["license.json"], &lic); err != nil || lic["state"] != "demo" {
			t.Errorf("license.json: %.300s (%v)", files["license.json"], err)
		}
		if !bytes.Contains(files["config.toml"], []byte("[redacted]")) || !bytes.Contains(files["config.toml"], []byte("Kadıköy")) {
			t.Errorf("config.toml should keep the Turkish text and show redacted secrets:\n%s", files["config.toml"])
		}
		// With --trace the given file; else the agent's trace of its last read.
		wantTrace := []byte(agent.DeviceTraceFile)
		if running {
			wantTrace = []byte("0.000100 tx 02000f")
		}
		if !bytes.Contains(files["device-trace.txt"], wantTrace) || !bytes.Contains(files["device-trace.txt"], []byte(" tx ")) || !bytes.Contains(files["log-tail.txt"], []byte("tposagent started")) {
			t.Errorf("trace or log tail missing:\n%s\n%s", files["device-trace.txt"], tailString(string(files["log-tail.txt"]), 500))
		}
		if !bytes.Contains(files["doctor.txt"], []byte("config")) || !bytes.Contains(files["version.txt"], []byte("tposagent ")) {
			t.Errorf("doctor or version missing")
		}
		return files
	}

	t.Run("agent running", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "report.zip")
		code, stdout, errOut := runCLIEnv(t, nil, "bugreport", "-o", out, "--lines", "200", "--trace", planted, "--config", f.cfgPath)
		if code != exitOK {
			t.Fatalf("bugreport: exit %d %s%s", code, stdout, errOut)
		}
		files := check(t, out, true)
		var s localapi.Status
		if err := json.Unmarshal(files["status.json"], &s); err != nil || s.Outbox.Dead != 1 || s.Device.FiscalSerial != "JI20012345" {
			t.Errorf("status.json: %v %+v", err, s)
		}
		var dev localapi.Device
		if err := json.Unmarshal(files["device.json"], &dev); err != nil || dev.Sources["pos"].Port != "COM3" || dev.Sources["pos"].AgeS == nil {
			t.Errorf("device.json lacks the POS's port and the report's age: %.400s (%v)", files["device.json"], err)
		}
		if n := bytes.Count(files["log-tail.txt"], []byte("\n")); n > 200 {
			t.Errorf("log tail has %d lines, want at most 200", n)
		}
		if fi, err := os.Stat(out); err != nil || runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Errorf("zip mode: %v %v", fi, err)
		}
	})
	t.Run("agent stopped", func(t *testing.T) {
		f.stop()
		out := filepath.Join(t.TempDir(), "report.zip")
		code, stdout, errOut := runCLIEnv(t, nil, "bugreport", "-o", out, "--config", f.cfgPath)
		if code != exitOK {
			t.Fatalf("bugreport: exit %d %s%s", code, stdout, errOut)
		}
		if !strings.Contains(stdout, "not running") {
			t.Errorf("stdout %q should say the agent was not running", stdout)
		}
		files := check(t, out, false)
		var st map[string]any
		if err := json.Unmarshal(files["outbox-stats.json"], &st); err != nil || st["dead"] != float64(1) {
			t.Errorf("outbox-stats.json from the file: %s (%v)", files["outbox-stats.json"], err)
		}
		var status struct {
			POSReport map[string]any `json:"pos_report"`
		}
		if err := json.Unmarshal(files["status.json"], &status); err != nil || status.POSReport["port"] != "COM3" || status.POSReport["age_s"] == nil {
			t.Errorf("status.json of a stopped agent lacks the POS report's port and age: %.400s (%v)", files["status.json"], err)
		}
	})
}
