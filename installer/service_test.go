package installer

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/kardianos/service"
)

func TestServiceConfig(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{Executable: "/usr/bin/tposagent", ConfigPath: filepath.Join(dir, "config.toml"), DataDir: filepath.Join(dir, "data"), DelayedAutoStart: true}
	c, err := ServiceConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "tposagent" || c.Executable != "/usr/bin/tposagent" {
		t.Fatalf("config %+v", c)
	}
	// The marker on the service's own command line: the agent knows a
	// service manager runs it without the session-0 heuristic.
	if got := strings.Join(c.Arguments, " "); got != "run --service --config "+spec.ConfigPath {
		t.Fatalf("arguments %q", got)
	}
	// kardianos/service sets no recovery action unless OnFailure is given.
	for k, want := range map[string]any{"OnFailure": "restart", "StartType": "automatic", "DelayedAutoStart": true} {
		if c.Option[k] != want {
			t.Errorf("option %s = %v, want %v", k, c.Option[k], want)
		}
	}
	if _, err := ServiceConfig(Spec{ConfigPath: "relative/config.toml"}); err == nil {
		t.Fatal("relative config path accepted")
	}
	if runtime.GOOS != "linux" {
		return // the systemd unit below is rendered for Linux only
	}
	unit, _ := c.Option["SystemdScript"].(string)
	want, err := RenderUnit(Spec{Executable: "/usr/bin/tposagent", ConfigPath: spec.ConfigPath, DataDir: spec.DataDir}.Unit())
	if err != nil {
		t.Fatal(err)
	}
	if unit != want {
		t.Fatalf("SystemdScript is not our unit:\n%s", unit)
	}
	if !strings.Contains(unit, "network-online.target") {
		t.Fatal("unit without network-online ordering")
	}
}

func TestSpecUnitLogOutsideDataDir(t *testing.T) {
	s := Spec{Executable: "/usr/bin/tposagent", ConfigPath: "/etc/tposagent/config.toml", DataDir: "/var/lib/tposagent"}
	s.LogFile = "/var/lib/tposagent/tposagent.log"
	if p := s.Unit(); len(p.ExtraWritable) != 0 {
		t.Fatalf("log inside data dir made extra writable paths %v", p.ExtraWritable)
	}
	s.LogFile = "/var/log/tposagent/agent.log"
	if p := s.Unit(); len(p.ExtraWritable) != 1 || p.ExtraWritable[0] != "/var/log/tposagent" {
		t.Fatalf("log outside data dir: writable %v", p.ExtraWritable)
	}
}

// TestManagerLifecycle installs, queries, starts, stops and removes the
// real service. It needs a service manager and root, and it changes the
// machine, so it runs only with TPOSAGENT_SERVICE_TEST=1.
func TestManagerLifecycle(t *testing.T) {
	dir := t.TempDir() // absolute on every OS; nothing is written there
	m, err := NewManager(Spec{ConfigPath: filepath.Join(dir, "config.toml"), DataDir: filepath.Join(dir, "data"), Name: "tposagent-test", DelayedAutoStart: true}, nil)
	if errors.Is(err, ErrNoServiceManager) {
		t.Skipf("no service manager here (detected %s: systemd is not running as PID 1, as in a CI container): install → status → uninstall is not exercised; everything up to the manager call is tested", service.Platform())
	}
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("TPOSAGENT_SERVICE_TEST") != "1" {
		t.Skipf("service manager %s present; set TPOSAGENT_SERVICE_TEST=1 (as root/Administrator) to install a test service for real", m.Platform())
	}
	if runtime.GOOS != "windows" && os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if st, _ := m.Status(); st != StatusNotInstalled {
		t.Fatalf("test service already present (%s); remove it first", st)
	}
	if upgraded, err := m.Install(); err != nil || upgraded {
		t.Fatalf("install: upgraded=%v err=%v", upgraded, err)
	}
	t.Cleanup(func() { _ = m.Uninstall() })
	if st, err := m.Status(); err != nil || st == StatusNotInstalled || st == StatusUnknown {
		t.Fatalf("status after install: %s %v", st, err)
	}
	if upgraded, err := m.Install(); err != nil || !upgraded {
		t.Fatalf("second install (upgrade in place): upgraded=%v err=%v", upgraded, err)
	}
	for _, w := range m.Warnings() { // e.g. wine refuses delayed start
		t.Logf("install warning: %s", w)
	}
	if err := m.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(); err != nil || st != StatusNotInstalled {
		t.Fatalf("status after uninstall: %s %v", st, err)
	}
	if err := m.Uninstall(); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("second uninstall: %v, want ErrNotInstalled", err)
	}
}
