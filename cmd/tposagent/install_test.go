package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

// installStdinTrap fails the test when anything reads it.
type installStdinTrap struct{ t *testing.T }

func (r installStdinTrap) Read([]byte) (int, error) {
	r.t.Error("install read stdin")
	return 0, io.EOF
}

var installSecrets = map[string]string{
	"TPOSAGENT_TPOSL_PASSWORD": "tposl-Şifre-s3cret",
	"TPOSAGENT_ODUYO_API_KEY":  "oduyo-key-s3cret",
	"TPOSAGENT_ODUYO_PASSWORD": "oduyo-pw-s3cret",
}

func installCLI(t *testing.T, stdin io.Reader, terminal bool, environ map[string]string, args ...string) (int, string, string) {
	t.Helper()
	old := lookupEnv
	lookupEnv = func(k string) (string, bool) { v, ok := environ[k]; return v, ok }
	defer func() { lookupEnv = old }()
	var out, errb bytes.Buffer
	e := &env{stdin: stdin, stdout: &out, stderr: &errb, stdinIsTerminal: terminal}
	code := report(e.stderr, run(context.Background(), e, args))
	return code, out.String(), errb.String()
}

func installArgs(cfg, data string, extra ...string) []string {
	return append([]string{"install", "--unattended", "--no-service", "--config", cfg,
		"--tposl-url", "https://lisans.example.com/api/TPOSL", "--tposl-username", "mağaza12",
		"--oduyo-base-url", "https://www.siteadi.com", "--oduyo-username", "kasa",
		"--tax-number", "1234567890", "--company-name", "Örnek Gıda A.Ş.", "--pos-no", "3",
		"--data-dir", data}, extra...)
}

func TestInstallUnattendedNeverReadsStdin(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	// A terminal is attached, but --unattended must not prompt.
	code, out, errOut := installCLI(t, installStdinTrap{t}, true, nil, "install", "--unattended", "--no-service", "--config", cfg, "--tposl-username", "x")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("want one line on stderr, got %q", errOut)
	}
	for _, want := range []string{"--tposl-url", "TPOSAGENT_TPOSL_URL", "--oduyo-api-key", "TPOSAGENT_ODUYO_API_KEY"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not name %s", errOut, want)
		}
	}
	if strings.Contains(errOut, "--tposl-username") {
		t.Errorf("stderr names a value that was given: %q", errOut)
	}
	if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("config written after a failed install (%s)", out)
	}
	// No terminal and no --unattended: the same, never a hang on stdin.
	code, _, errOut = installCLI(t, installStdinTrap{t}, false, nil, "install", "--no-service", "--config", cfg)
	if code != exitUsage || !strings.Contains(errOut, "no terminal") {
		t.Fatalf("no terminal: exit %d, %q", code, errOut)
	}
}

func TestInstallUnattendedFlagsAndEnv(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etc", "config.toml")
	data := filepath.Join(dir, "data")
	code, out, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, installArgs(cfg, data)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	fi, err := os.Stat(cfg)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config: %v %v", fi, err)
	}
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Oduyo.Password.Reveal() != "oduyo-pw-s3cret" || c.Store.CompanyName != "Örnek Gıda A.Ş." || c.Store.PosNo != 3 {
		t.Fatalf("values not written: %+v", c.Store)
	}
	token := c.API.Token.Reveal()
	for _, s := range append([]string{token}, installSecrets["TPOSAGENT_TPOSL_PASSWORD"], installSecrets["TPOSAGENT_ODUYO_API_KEY"], installSecrets["TPOSAGENT_ODUYO_PASSWORD"]) {
		if strings.Contains(out+errOut, s) {
			t.Fatalf("output shows a secret:\n%s%s", out, errOut)
		}
	}
	if !strings.Contains(out, "created") || !strings.Contains(out, "generated") {
		t.Fatalf("output %q", out)
	}

	// Re-install: a flag wins over the environment, the token stays.
	env2 := map[string]string{"TPOSAGENT_TPOSL_URL": "https://env.example.com/api/TPOSL"}
	code, out, errOut = installCLI(t, installStdinTrap{t}, false, env2, "install", "--unattended", "--no-service", "--config", cfg, "--tposl-url", "https://flag.example.com/api/TPOSL")
	if code != 0 {
		t.Fatalf("re-install exit %d: %s", code, errOut)
	}
	c2, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2.TPOSL.URL != "https://flag.example.com/api/TPOSL" || c2.API.Token.Reveal() != token {
		t.Fatalf("re-install: url %q, token kept %v", c2.TPOSL.URL, c2.API.Token.Reveal() == token)
	}
	if !strings.Contains(out, "updated: tposl.url") || !strings.Contains(out, "api token: kept") {
		t.Fatalf("re-install output %q", out)
	}
}

func TestInstallPrompts(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	env := map[string]string{"TPOSAGENT_ODUYO_API_KEY": "k-s3cret", "TPOSAGENT_ODUYO_PASSWORD": "p-s3cret", "TPOSAGENT_TPOSL_PASSWORD": "t-s3cret"}
	args := []string{"install", "--no-service", "--config", cfg, "--tposl-username", "u", "--oduyo-base-url", "https://www.siteadi.com",
		"--oduyo-username", "kasa", "--data-dir", filepath.Join(dir, "data")}
	stdin := strings.NewReader("https://lisans.example.com/api/TPOSL\n1234567890\n")
	code, out, errOut := installCLI(t, stdin, true, env, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "tposl.url") || !strings.Contains(out, "store.tax_number") {
		t.Fatalf("prompts do not name the keys: %q", out)
	}
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.TPOSL.URL != "https://lisans.example.com/api/TPOSL" || c.Store.TaxNumber != "1234567890" {
		t.Fatalf("answers not stored: %q %q", c.TPOSL.URL, c.Store.TaxNumber)
	}
}

func TestInstallBadFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	data := filepath.Join(dir, "data")
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not a number", installArgs(cfg, data, "--pos-no", "üç"), exitError, "--pos-no"},
		{"bad url", installArgs(cfg, data, "--tposl-url", "lisans.example.com"), exitError, "tposl.url"},
		{"unknown flag", installArgs(cfg, data, "--tposl-uri", "x"), exitUsage, "tposl-uri"},
		{"empty value", installArgs(cfg, data, "--oduyo-username", ""), exitUsage, "--oduyo-username needs a value"},
		{"positional", installArgs(cfg, data, "now"), exitUsage, `unexpected argument "now"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, c.args...)
			if code != c.code || !strings.Contains(errOut, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d naming %q", code, errOut, c.code, c.want)
			}
			if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("want one line, got %q", errOut)
			}
			for _, s := range installSecrets {
				if strings.Contains(errOut, s) {
					t.Fatalf("error shows a secret: %q", errOut)
				}
			}
			if _, err := os.Stat(cfg); err == nil {
				t.Fatal("config written despite the error")
			}
		})
	}
}

func TestInstallDryRun(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	args := installArgs(cfg, filepath.Join(dir, "data"), "--dry-run")
	code, out, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "would be created") || !strings.Contains(out, "run --config "+cfg) {
		t.Fatalf("dry-run output %q", out)
	}
	if _, err := os.Stat(cfg); err == nil {
		t.Fatal("dry run wrote the config")
	}
}

func TestInstallWithoutServiceManager(t *testing.T) {
	if _, err := installer.NewManager(installer.Spec{ConfigPath: "/etc/tposagent/config.toml"}, nil); !errors.Is(err, installer.ErrNoServiceManager) {
		t.Skip("a service manager is present: this test would install for real (see installer.TestManagerLifecycle)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	args := installArgs(cfg, filepath.Join(dir, "data"))
	args = append([]string{args[0], args[1]}, args[3:]...) // drop --no-service
	code, _, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, args...)
	if code != exitError || !strings.Contains(errOut, "no supported service manager") || !strings.Contains(errOut, "config and data dir are ready") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if _, err := config.Load(cfg); err != nil {
		t.Fatalf("bootstrap before the manager call did not complete: %v", err)
	}

	code, _, errOut = installCLI(t, installStdinTrap{t}, false, nil, "start", "--config", cfg)
	if code != exitError || !strings.Contains(errOut, "no supported service manager") {
		t.Fatalf("start: exit %d, %q", code, errOut)
	}
	code, out, errOut := installCLI(t, installStdinTrap{t}, false, nil, "uninstall", "--purge", "--config", cfg)
	if code != 0 || !strings.Contains(out, "purged") {
		t.Fatalf("uninstall --purge: exit %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(cfg); err == nil {
		t.Fatal("purge kept the config")
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Fatal("purge kept the data dir")
	}
}

// TestUninstallPurgeKeepsForeignDataDir: with data_dir = a directory that
// was there before (/var/lib, D:\TPOS\data), uninstall --purge removes the
// agent's files in it and leaves the directory and everything else.
func TestUninstallPurgeKeepsForeignDataDir(t *testing.T) {
	if _, err := installer.NewManager(installer.Spec{ConfigPath: "/etc/tposagent/config.toml"}, nil); !errors.Is(err, installer.ErrNoServiceManager) {
		t.Skip("a service manager is present: uninstall would touch the real service (the container test covers it)")
	}
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib")
	foreign := filepath.Join(lib, "dpkg", "status")
	if err := os.MkdirAll(filepath.Dir(foreign), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, []byte("Package: libc6\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "etc", "config.toml")
	if code, _, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, installArgs(cfg, lib)...); code != 0 {
		t.Fatalf("install: exit %d %q", code, errOut)
	}
	for _, f := range []string{"outbox.db", "tposagent.log", agent.APIAddrFile, device.CacheFile} {
		if err := os.WriteFile(filepath.Join(lib, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := installCLI(t, installStdinTrap{t}, false, nil, "uninstall", "--purge", "--config", cfg)
	if code != 0 {
		t.Fatalf("uninstall --purge: exit %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("uninstall --purge deleted %s, which the agent did not make: %v\n%s", foreign, err, out)
	}
	for _, f := range []string{"outbox.db", "tposagent.log", agent.APIAddrFile, device.CacheFile} {
		if _, err := os.Stat(filepath.Join(lib, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("uninstall --purge kept the agent's %s", f)
		}
	}
	if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
		t.Error("uninstall --purge kept the config")
	}
	if !strings.Contains(out, "kept:      "+lib+" (not created by tposagent)") {
		t.Errorf("output does not say the data dir was kept:\n%s", out)
	}
}
