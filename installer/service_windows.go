//go:build windows

package installer

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// managerAvailable: the service control manager is always there.
func managerAvailable() bool { return true }

// recoveryActions restart the service on the first, second and every later
// failure (kardianos/service sets only the first). The failure count resets
// after a day.
var recoveryActions = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 10 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
}

const recoveryResetSeconds = 24 * 60 * 60

// afterInstall sets the recovery actions kardianos/service cannot express.
func (m *Manager) afterInstall() error { return m.configure(nil) }

// update changes the registered service in place: binary, arguments, start
// type, delayed start, recovery, Event Log source.
func (m *Manager) update() error {
	return m.configure(func(s *mgr.Service) error {
		cfg, err := s.Config()
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		cfg.BinaryPathName = commandLine(m.spec.Executable, m.spec.Arguments())
		cfg.StartType = mgr.StartAutomatic
		cfg.DelayedAutoStart = m.spec.DelayedAutoStart
		cfg.DisplayName = m.spec.DisplayName
		cfg.Description = m.spec.Description
		if err := s.UpdateConfig(cfg); err != nil {
			return fmt.Errorf("update config: %w", err)
		}
		err = eventlog.InstallAsEventCreate(m.spec.Name, eventlog.Error|eventlog.Warning|eventlog.Info)
		if err != nil && !strings.Contains(err.Error(), "exists") {
			return fmt.Errorf("event log source: %w", err)
		}
		return nil
	})
}

func (m *Manager) configure(extra func(s *mgr.Service) error) error {
	sm, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to service manager: %w", err)
	}
	defer sm.Disconnect()
	s, err := sm.OpenService(m.spec.Name)
	if err != nil {
		return fmt.Errorf("open service: %w", err)
	}
	defer s.Close()
	if extra != nil {
		if err := extra(s); err != nil {
			return err
		}
	}
	if err := s.SetRecoveryActions(recoveryActions, recoveryResetSeconds); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	// Also when the service stops with an error exit code, not only when
	// the process crashes (Run reports a failure that way).
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}

// commandLine quotes the executable and arguments for the service manager.
func commandLine(exe string, args []string) string {
	parts := []string{windows.EscapeArg(exe)}
	for _, a := range args {
		parts = append(parts, windows.EscapeArg(a))
	}
	return strings.Join(parts, " ")
}

// uninstall removes the service and its Event Log source.
func (m *Manager) uninstall() error { return m.svc.Uninstall() }
