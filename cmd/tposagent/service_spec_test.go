package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

// TestServiceSpecRenders checks the spec that start, stop, restart and
// uninstall hand to the service manager: it must render (on systemd an
// empty data dir made every one of them fail with "render unit: data dir:
// is empty") and carry the data dir and log file of the config file.
func TestServiceSpecRenders(t *testing.T) {
	dir := t.TempDir()
	custom := filepath.Join(dir, "custom.toml")
	if err := os.WriteFile(custom, []byte("data_dir = \"state\"\n[log]\nfile = \"/var/log/tposagent/agent.log\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.toml")
	if err := os.WriteFile(broken, []byte("data_dir = [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, dataDir, writable string
	}{
		{"no config file yet", filepath.Join(dir, "missing.toml"), config.DefaultDataDir(), ""},
		{"config with its own data dir and log", custom, filepath.Join(dir, "state"), "/var/log/tposagent"},
		{"broken config", broken, config.DefaultDataDir(), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := serviceSpec(c.path)
			spec.Executable = "/usr/bin/tposagent" // the test binary's path may be anywhere
			if spec.ConfigPath != c.path {
				t.Errorf("config path %q, want %q", spec.ConfigPath, c.path)
			}
			if spec.DataDir != c.dataDir {
				t.Errorf("data dir %q, want %q", spec.DataDir, c.dataDir)
			}
			cfg, err := installer.ServiceConfig(spec)
			if err != nil {
				t.Fatalf("the CLI's service spec does not render: %v", err)
			}
			if filepath.Separator != '/' {
				return // the unit is Linux's
			}
			unit, _ := cfg.Option["SystemdScript"].(string)
			if !strings.Contains(unit, "ReadWritePaths=-"+c.dataDir+"\n") {
				t.Errorf("unit does not make %s writable:\n%s", c.dataDir, unit)
			}
			if c.writable != "" && !strings.Contains(unit, "ReadWritePaths=-"+c.writable+"\n") {
				t.Errorf("unit does not make the log dir %s writable:\n%s", c.writable, unit)
			}
		})
	}
}
