//go:build windows

package installer

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

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

// afterInstall sets what kardianos/service cannot express: the recovery
// actions for every failure, recovery on non-crash failures, and delayed
// start (kardianos would set delayed start in CreateService, which deletes
// the new service when the manager refuses the setting, so NewManager
// leaves it out of the kardianos config and it is set here).
func (m *Manager) afterInstall() error { return m.configure(nil) }

// update changes the registered service in place: binary, arguments, start
// type, names, delayed start, recovery, Event Log source.
func (m *Manager) update() error {
	return m.configure(func(s *mgr.Service) error {
		// ChangeServiceConfig itself: mgr's Config and UpdateConfig also
		// read and set the SID type and delayed start, which not every
		// manager supports.
		err := windows.ChangeServiceConfig(s.Handle, windows.SERVICE_NO_CHANGE, mgr.StartAutomatic, windows.SERVICE_NO_CHANGE,
			windows.StringToUTF16Ptr(commandLine(m.spec.Executable, m.spec.Arguments())), nil, nil, nil, nil, nil,
			windows.StringToUTF16Ptr(m.spec.DisplayName))
		if err != nil {
			return fmt.Errorf("update config: %w", err)
		}
		d := windows.SERVICE_DESCRIPTION{Description: windows.StringToUTF16Ptr(m.spec.Description)}
		err = windows.ChangeServiceConfig2(s.Handle, windows.SERVICE_CONFIG_DESCRIPTION, (*byte)(unsafe.Pointer(&d)))
		if err := m.optional("the description", err); err != nil {
			return fmt.Errorf("update description: %w", err)
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
	var delayed windows.SERVICE_DELAYED_AUTO_START_INFO
	if m.spec.DelayedAutoStart {
		delayed.IsDelayedAutoStartUp = 1
	}
	err = windows.ChangeServiceConfig2(s.Handle, windows.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, (*byte)(unsafe.Pointer(&delayed)))
	if err := m.optional(fmt.Sprintf("delayed automatic start = %v (the service starts with the others at boot)", m.spec.DelayedAutoStart), err); err != nil {
		return fmt.Errorf("set delayed start: %w", err)
	}
	if err := s.SetRecoveryActions(recoveryActions, recoveryResetSeconds); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	// Also when the service stops with an error exit code, not only when
	// the process crashes (Run reports a failure that way).
	err = s.SetRecoveryActionsOnNonCrashFailures(true)
	if err := m.optional("recovery on non-crash failures (the service is restarted only when the process ends without stopping)", err); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}

// optional passes err on unless the service manager does not support the
// setting at all (wine 8 answers ERROR_INVALID_LEVEL to ChangeServiceConfig2
// levels 3 and 4, older or stripped systems may answer likewise): then the
// install carries on and a warning says what is missing.
func (m *Manager) optional(what string, err error) error {
	if errors.Is(err, windows.ERROR_INVALID_LEVEL) || errors.Is(err, windows.ERROR_NOT_SUPPORTED) || errors.Is(err, windows.ERROR_CALL_NOT_IMPLEMENTED) {
		m.warn(fmt.Sprintf("the service manager does not support %s: %v; carrying on without it", what, err))
		return nil
	}
	return err
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

// warn records a setting the service manager refused, for Warnings.
func (m *Manager) warn(msg string) {
	m.warnings = append(m.warnings, msg)
	m.log.Warn(msg)
}
