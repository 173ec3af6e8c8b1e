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
