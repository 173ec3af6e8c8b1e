package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/internal/config"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	code = report(e.stderr, run(context.Background(), e, args))
	return code, out.String(), errb.String()
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.name, func(t *testing.T) {
			args := []string{c.name, "--help"}
			switch c.name {
			case "kasa":
				args = []string{"kasa", "update", "--help"}
			case "special-code":
				args = []string{"special-code", "create", "--help"}
			case "device":
				args = []string{"device", "--help"}
			}
			code, out, errOut := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if !strings.Contains(out, "Usage") && !strings.Contains(out, "usage") {
				t.Errorf("no usage text: %q", out)
			}
			if c.name != "device" && !strings.Contains(out, "Examples") && !strings.Contains(out, "tposagent "+c.name) {
				t.Errorf("no examples: %q", out)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"status", "--bogus"}, {"kasa"}, {"outbox"}, {"outbox", "retry"}} {
		code, _, errOut := runCLI(t, args...)
		if code != exitUsage && !(len(args) == 2 && args[0] == "outbox") {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
		if lines := strings.Count(strings.TrimSpace(errOut), "\n"); errOut == "" || lines > 0 && len(args) > 0 && args[0] != "outbox" {
			t.Errorf("%v: want one line on stderr, got %q", args, errOut)
		}
	}
}

func TestClientCommandsWithoutAgent(t *testing.T) {
	dir := t.TempDir()
	c := config.Default()
	c.DataDir = dir
	c.TPOSL.URL, c.Oduyo.BaseURL = "https://t.example.com/TPOSL", "https://o.example.com"
	c.API.Listen = "127.0.0.1:1" // nothing listens there
	c.API.Token = "0123456789abcdef0123"
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, config.Encode(&c), 0o600)

	code, _, errOut := runCLI(t, "--config", path, "status")
	if code != exitError || !strings.Contains(errOut, "no tposagent is running") {
		t.Errorf("status: exit %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "license", "--config", path)
	if code != exitUnknown || !strings.Contains(errOut, "no tposagent is running") {
		t.Errorf("license: exit %d %q, want %d", code, errOut, exitUnknown)
	}
	for _, args := range [][]string{{"outbox", "dead", "--config", path}, {"outbox", "retry", "7", "--config", path}, {"status", "--config", path}} {
		code, _, errOut = runCLI(t, args...)
		if code != exitError || !strings.Contains(errOut, "no tposagent is running") {
			t.Errorf("%v: exit %d %q: --config after the action must be honoured", args, code, errOut)
		}
	}
	code, _, errOut = runCLI(t, "--config", filepath.Join(dir, "missing.toml"), "status")
	if code != exitError || !strings.Contains(errOut, "no config file") {
		t.Errorf("missing config: exit %d %q", code, errOut)
	}
	os.WriteFile(path, []byte("[api]\ntoken = \"0123456789abcdef0123\"\nlisten = \"127.0.0.1:1\"\nbogus = 1\n"), 0o600)
	code, _, errOut = runCLI(t, "--config", path, "status")
	if code != exitError || !strings.Contains(errOut, "api.bogus") || !strings.Contains(errOut, ":4") {
		t.Errorf("invalid config: exit %d %q, want the key and line", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "tposagent ") || !strings.Contains(out, "commit") {
		t.Errorf("version: %d %q", code, out)
	}
}
