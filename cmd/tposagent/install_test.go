package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig/perm"
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
		"--tposl-url", "https://lisans.example.com/TPOSL", "--tposl-username", "mağaza12",
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
	env2 := map[string]string{"TPOSAGENT_TPOSL_URL": "https://env.example.com/TPOSL"}
	code, out, errOut = installCLI(t, installStdinTrap{t}, false, env2, "install", "--unattended", "--no-service", "--config", cfg, "--tposl-url", "https://flag.example.com/TPOSL")
	if code != 0 {
		t.Fatalf("re-install exit %d: %s", code, errOut)
	}
	c2, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2.TPOSL.URL != "https://flag.example.com/TPOSL" || c2.API.Token.Reveal() != token {
		t.Fatalf("re-install: url %q, token kept %v", c2.TPOSL.URL, c2.API.Token.Reveal() == token)
	}
	if !strings.Contains(out, "updated: tposl.url") || !strings.Contains(out, "api token: kept") {
		t.Fatalf("re-install output %q", out)
	}
	perm.Want(t, cfg, 0o600) // last: under wine, whose ACLs are discarded, it skips
}

func TestInstallPrompts(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	env := map[string]string{"TPOSAGENT_ODUYO_API_KEY": "k-s3cret", "TPOSAGENT_ODUYO_PASSWORD": "p-s3cret", "TPOSAGENT_TPOSL_PASSWORD": "t-s3cret"}
	args := []string{"install", "--no-service", "--config", cfg, "--tposl-username", "u", "--oduyo-base-url", "https://www.siteadi.com",
		"--oduyo-username", "kasa", "--data-dir", filepath.Join(dir, "data")}
	stdin := strings.NewReader("https://lisans.example.com/TPOSL\n1234567890\n")
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
	if c.TPOSL.URL != "https://lisans.example.com/TPOSL" || c.Store.TaxNumber != "1234567890" {
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

// TestInstallDryRunRefusesSystemDataDir: `install --dry-run --data-dir
// /etc` fails with the reason, as the real install does (the old dry run
// printed "data dir:  /etc" and exited 0; the install made /etc 0700).
// Real system paths are safe here: a dry run writes nothing.
func TestInstallDryRunRefusesSystemDataDir(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	shared := []string{"/etc", "/", "/var/lib", "/usr"}
	if runtime.GOOS == "windows" {
		shared = []string{os.Getenv("ProgramData"), os.Getenv("SystemRoot"), `C:\`, os.Getenv("ProgramFiles")}
	}
	for _, d := range shared {
		if d == "" {
			continue // a variable this Windows does not set
		}
		code, out, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, installArgs(cfg, d, "--dry-run")...)
		if code == 0 || !strings.Contains(errOut, "data_dir") || !(strings.Contains(errOut, "shared system directory") || strings.Contains(errOut, "root of a drive")) {
			t.Errorf("install --dry-run --data-dir %s: exit %d, stdout %q, stderr %q: want a refusal with the reason", d, code, out, errOut)
		}
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
	if !strings.Contains(out, "would be created") || !strings.Contains(out, "run --service --config "+cfg) {
		t.Fatalf("dry-run output %q", out)
	}
	if _, err := os.Stat(cfg); err == nil {
		t.Fatal("dry run wrote the config")
	}
}
