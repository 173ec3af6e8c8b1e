//go:build linux

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

// Linux without systemd as PID 1 (a container): install prepares the config
// and data dir and says what is missing. Windows always has its service
// control manager.
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

// TestUninstallPurgeKeepsForeignDataDir: install refuses a data dir that
// was there before with other files in it (/var/lib, D:\TPOS\data); a
// config pointed by hand at another program's directory and at a system
// log (log.file = /var/log/syslog, with .1 and .2) makes uninstall --purge
// remove nothing of theirs: only what install recorded in its manifest.
// The old code took the directory over, then deleted license.json and
// device.json there and the log with its rotations.
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
	code, _, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, installArgs(cfg, lib)...)
	if code == 0 || !strings.Contains(errOut, "holds files tposagent did not create (dpkg)") {
		t.Errorf("install into a directory of other files: exit %d %q, want a refusal naming them", code, errOut)
	}
	own := filepath.Join(dir, "data")
	if code, _, errOut := installCLI(t, installStdinTrap{t}, false, installSecrets, installArgs(cfg, own)...); code != 0 {
		t.Fatalf("install: exit %d %q", code, errOut)
	}
	for _, f := range []string{"outbox.db", agent.APIAddrFile} {
		if err := os.WriteFile(filepath.Join(own, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Someone points the config at another program's files.
	other := filepath.Join(dir, "otherpos")
	syslog := filepath.Join(dir, "log", "syslog")
	theirs := []string{filepath.Join(other, device.CacheFile), filepath.Join(other, "license.json"), syslog, syslog + ".1", syslog + ".2"}
	for _, f := range theirs {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("not the agent's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.DataDir, c.Log.File = other, syslog
	if err := os.WriteFile(cfg, config.Encode(c), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := installCLI(t, installStdinTrap{t}, false, nil, "uninstall", "--purge", "--config", cfg)
	if code != 0 {
		t.Fatalf("uninstall --purge: exit %d %q %q", code, out, errOut)
	}
	for _, f := range append(theirs, foreign) {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("uninstall --purge deleted %s, which the agent did not make: %v\n%s", f, err, out)
		}
	}
	for _, want := range []string{"kept:      " + other + " (no manifest", "kept:      " + syslog + " (log.file, not recorded"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}
