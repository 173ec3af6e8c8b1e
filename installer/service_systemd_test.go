//go:build linux

package installer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kardianos/service"
)

// fakeSystemctl answers like systemctl for one unit and logs every call.
const fakeSystemctl = `#!/bin/sh
echo "$*" >> "$FAKE_SYSTEMCTL_LOG"
unit_dir=/etc/systemd/system
case "$1" in
--version) echo "systemd 252 (fake)"; exit 0 ;;
is-active)
  if [ -f "$FAKE_SYSTEMCTL_STATE/active" ]; then echo active; exit 0; fi
  echo inactive; exit 3 ;;
list-unit-files)
  name="$4"
  if [ -f "$unit_dir/$name" ]; then echo "$name enabled enabled"; echo "1 unit files listed."; exit 0; fi
  echo "0 unit files listed."; exit 1 ;;
start|restart) touch "$FAKE_SYSTEMCTL_STATE/active" ;;
stop) rm -f "$FAKE_SYSTEMCTL_STATE/active" ;;
esac
exit 0
`

// TestManagerSystemdFake drives the real kardianos/service systemd code with
// a fake systemctl: it proves the unit kardianos writes is exactly ours
// (its template engine does not touch it), that enable and daemon-reload
// run, that a second install updates in place and that uninstall removes
// the file. It writes /etc/systemd/system/<unique>.service, so it runs only
// as root on a machine where systemd is not running.
func TestManagerSystemdFake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to write /etc/systemd/system")
	}
	if systemdAvailable() {
		t.Skip("systemd is running here: TestManagerLifecycle (TPOSAGENT_SERVICE_TEST=1) tests it for real")
	}
	if fi, err := os.Stat("/etc/systemd/system"); err != nil || !fi.IsDir() {
		t.Skip("no /etc/systemd/system directory")
	}
	// Cleanups run last-in first-out: this one, registered before
	// t.Setenv, runs after PATH is restored and detects the real system.
	registry := service.AvailableSystems()
	t.Cleanup(func() {
		service.ChooseSystem(registry...)
		managerAvailable = systemdAvailable
	})
	bin := t.TempDir()
	state := t.TempDir()
	log := filepath.Join(state, "calls.log")
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(fakeSystemctl), 0o755); err != nil {
		t.Fatal(err)
	}
	// kardianos/service detects systemd when rpm-ostree is on PATH.
	if err := os.WriteFile(filepath.Join(bin, "rpm-ostree"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_SYSTEMCTL_LOG", log)
	t.Setenv("FAKE_SYSTEMCTL_STATE", state)
	var systemd []service.System
	for _, s := range registry {
		if s.String() == "linux-systemd" {
			systemd = append(systemd, s)
		}
	}
	service.ChooseSystem(systemd...)
	if sys := service.ChosenSystem(); sys == nil || sys.String() != "linux-systemd" {
		t.Fatalf("could not select kardianos' systemd backend (got %v)", sys)
	}
	managerAvailable = func() bool { return true }
	// The machine's users are left alone: record what would be prepared.
	var prepared []Spec
	oldPrepare := prepareAccess
	prepareAccess = func(s Spec) ([]string, error) { prepared = append(prepared, s); return nil, nil }
	t.Cleanup(func() { prepareAccess = oldPrepare })

	name := fmt.Sprintf("tposagent-fake-%d", os.Getpid())
	unitPath := filepath.Join("/etc/systemd/system", name+".service")
	t.Cleanup(func() { os.Remove(unitPath) })
	dir := t.TempDir()
	spec := Spec{Name: name, Executable: "/usr/bin/tposagent", ConfigPath: filepath.Join(dir, "config.toml"), DataDir: filepath.Join(dir, "data")}
	m, err := NewManager(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := m.Status(); err != nil || st != StatusNotInstalled {
		t.Fatalf("status before install: %s %v", st, err)
	}
	if err := m.Start(); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("start before install: %v", err)
	}
	upgraded, err := m.Install()
	if err != nil || upgraded {
		t.Fatalf("install: upgraded=%v err=%v", upgraded, err)
	}
	written, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	withDefaults, err := spec.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	want, err := RenderUnit(withDefaults.Unit())
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != want {
		i := 0
		for i < len(written) && i < len(want) && written[i] == want[i] {
			i++
		}
		t.Fatalf("kardianos wrote a different unit from byte %d: got %q, want %q", i, string(written[i:]), want[i:])
	}
	if st, err := m.Status(); err != nil || st != StatusStopped {
		t.Fatalf("status after install: %s %v", st, err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if st, _ := m.Status(); st != StatusRunning {
		t.Fatalf("status after start: %s", st)
	}

	// Re-install with a new config path: the unit is rewritten in place.
	spec.ConfigPath = filepath.Join(dir, "other.toml")
	m2, err := NewManager(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if upgraded, err := m2.Install(); err != nil || !upgraded {
		t.Fatalf("re-install: upgraded=%v err=%v", upgraded, err)
	}
	written, _ = os.ReadFile(unitPath)
	if !strings.Contains(string(written), "run --service --config "+spec.ConfigPath+"\n") {
		t.Fatalf("re-install did not update the unit:\n%s", written)
	}
	if fi, _ := os.Stat(unitPath); fi.Mode().Perm() != 0o644 {
		t.Fatalf("unit mode %o, want 644", fi.Mode().Perm())
	}

	if err := m2.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(unitPath); !os.IsNotExist(err) {
		t.Fatal("uninstall left the unit file")
	}
	if st, _ := m2.Status(); st != StatusNotInstalled {
		t.Fatalf("status after uninstall: %s", st)
	}
	if len(prepared) != 2 || prepared[0].DataDir != spec.DataDir {
		t.Errorf("install prepared the service user's access %d times (%+v), want once per install", len(prepared), prepared)
	}
	calls, _ := os.ReadFile(log)
	for _, want := range []string{"enable " + name + ".service", "daemon-reload", "start " + name + ".service", "stop " + name + ".service", "disable " + name + ".service"} {
		if !strings.Contains(string(calls), want+"\n") {
			t.Errorf("systemctl never called with %q; calls:\n%s", want, calls)
		}
	}
}
