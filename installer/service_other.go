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
func managerAvailable() bool {
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

// update rewrites the unit in place and reloads systemd.
func (m *Manager) update() error {
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
	for _, args := range [][]string{{"daemon-reload"}, {"enable", m.spec.Name + ".service"}} {
		out, err := exec.Command("systemctl", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
