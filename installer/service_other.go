//go:build !windows

package installer

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"
)

// unitDir is where the installer writes the unit.
const unitDir = "/etc/systemd/system"

// managerAvailable reports whether systemd is PID 1. kardianos/service would
// otherwise fall back to SysV scripts or upstart, which we do not support.
// A variable so that tests can drive the systemd path with a fake systemctl.
var managerAvailable = systemdAvailable

func systemdAvailable() bool {
	sys := service.ChosenSystem()
	return sys != nil && sys.String() == "linux-systemd" && systemdIsPID1()
}

func systemdIsPID1() bool {
	if fi, err := osStat("/run/systemd/system"); err == nil && fi.IsDir() {
		return true
	}
	return false
}

// afterInstall: kardianos/service has written the unit and enabled it.
func (m *Manager) afterInstall() error { return nil }

// packageUnitDirs hold units that a .deb or .rpm installed.
var packageUnitDirs = []string{"/usr/lib/systemd/system", "/lib/systemd/system"}

// ownUnit is the unit file the installer writes.
func (m *Manager) ownUnit() string { return filepath.Join(unitDir, m.spec.Name+".service") }

// packageUnit returns the unit file a package installed, "" when none.
func (m *Manager) packageUnit() string {
	for _, d := range packageUnitDirs {
		p := filepath.Join(d, m.spec.Name+".service")
		if _, err := osStat(p); err == nil {
			return p
		}
	}
	return ""
}

func systemctl(args ...string) error {
	out, err := exec.Command("systemctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// uninstall removes our unit file, or only disables a package's unit
// (the package manager owns that file).
func (m *Manager) uninstall() error {
	if _, err := osStat(m.ownUnit()); err == nil {
		return m.svc.Uninstall()
	}
	if err := systemctl("disable", m.spec.Name+".service"); err != nil {
		return err
	}
	return systemctl("daemon-reload")
}

// update rewrites the unit in place and reloads systemd. When a package
// installed the unit (and we never wrote one), that unit is kept: the
// package manager owns it.
func (m *Manager) update() error {
	if _, err := osStat(m.ownUnit()); err != nil && m.packageUnit() != "" {
		if err := systemctl("daemon-reload"); err != nil {
			return err
		}
		return systemctl("enable", m.spec.Name+".service")
	}
	unit, err := RenderUnit(m.spec.Unit())
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(unitDir, m.spec.Name+".service"), []byte(unit)); err != nil {
		return err
	}
	if err := securePathMode(filepath.Join(unitDir, m.spec.Name+".service"), 0o644); err != nil {
		return err
	}
	if err := systemctl("daemon-reload"); err != nil {
		return err
	}
	return systemctl("enable", m.spec.Name+".service")
}
