package installer

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kardianos/service"
)

// ErrNoServiceManager is returned when this machine has no service manager
// the installer supports (Linux without systemd as PID 1, e.g. a container).
var ErrNoServiceManager = errors.New("no supported service manager (systemd or the Windows service control manager) is running")

// ErrNotInstalled is returned when the service is not registered.
var ErrNotInstalled = errors.New("the service is not installed")

// Spec describes the service to register.
type Spec struct {
	Name        string // default "tposagent"
	DisplayName string
	Description string
	Executable  string // absolute; default the running binary
	ConfigPath  string // absolute
	DataDir     string // absolute
	LogFile     string // absolute, "" for none (made writable when outside DataDir)
	// DelayedAutoStart starts the service a little after boot (Windows).
	DelayedAutoStart bool
}

func (s Spec) withDefaults() (Spec, error) {
	if s.Name == "" {
		s.Name = DefaultName
	}
	if s.DisplayName == "" {
		s.DisplayName = "TPOS till agent"
	}
	if s.Description == "" {
		s.Description = "Registers the till with the TPOS licence server and delivers kasa updates to Ödüyo."
	}
	if s.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return s, fmt.Errorf("find own executable: %w", err)
		}
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		s.Executable = exe
	}
	if !filepath.IsAbs(s.ConfigPath) {
		return s, fmt.Errorf("service config path %q is not absolute", s.ConfigPath)
	}
	return s, nil
}

// Arguments are what the service manager passes to the binary: "run" with
// the marker that a service manager runs it, and the config.
func (s Spec) Arguments() []string { return []string{"run", "--service", "--config", s.ConfigPath} }

// Unit returns the systemd unit parameters of s.
func (s Spec) Unit() UnitParams {
	p := UnitParams{Name: s.Name, Executable: filepath.ToSlash(s.Executable),
		ConfigPath: filepath.ToSlash(s.ConfigPath), DataDir: filepath.ToSlash(s.DataDir)}
	if s.LogFile != "" {
		if rel, err := filepath.Rel(s.DataDir, s.LogFile); err != nil || rel == ".." || len(rel) > 2 && rel[:3] == ".."+string(filepath.Separator) {
			p.ExtraWritable = append(p.ExtraWritable, filepath.ToSlash(filepath.Dir(s.LogFile)))
		}
	}
	return p
}

// ServiceConfig is the kardianos/service configuration of s: automatic
// start with "run --service --config <abs path>"; on Windows recovery on failure
// (OnFailure must be given, or kardianos sets no recovery at all) and the
// delayed start option; on Linux our own unit (the built-in template has
// no network-online ordering). A pure function.
func ServiceConfig(s Spec) (*service.Config, error) {
	s, err := s.withDefaults()
	if err != nil {
		return nil, err
	}
	unit, err := RenderUnit(s.Unit())
	if err != nil && !isWindows {
		return nil, err
	}
	return &service.Config{
		Name:        s.Name,
		DisplayName: s.DisplayName,
		Description: s.Description,
		Executable:  s.Executable,
		Arguments:   s.Arguments(),
		Option: service.KeyValue{
			"StartType":              "automatic",
			"DelayedAutoStart":       s.DelayedAutoStart,
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "5s",
			"OnFailureResetPeriod":   86400,
			"SystemdScript":          unit,
			"Restart":                "always",
		},
	}, nil
}

// Status of the installed service.
type Status string

const (
	StatusRunning      Status = "running"
	StatusStopped      Status = "stopped"
	StatusNotInstalled Status = "not installed"
	StatusFailed       Status = "failed"
	StatusUnknown      Status = "unknown"
)

// Manager registers and controls the service.
type Manager struct {
	spec     Spec
	svc      service.Service
	log      *slog.Logger
	warnings []string
}

// prepareAccess, when set (Linux), gives the service user the agent's
// files before the service is registered and returns warnings for the
// operator; a variable so that tests with a fake service manager leave
// the machine's users alone.
var prepareAccess func(Spec) ([]string, error)

// Warnings are what the last Install could not arrange and the operator
// should know: a data dir the service user cannot write (Linux), a setting
// the service manager refused such as delayed start (Windows, wine).
func (m *Manager) Warnings() []string { return m.warnings }

// NewManager returns a Manager for spec, or ErrNoServiceManager when the
// machine has none the installer supports.
func NewManager(spec Spec, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !managerAvailable() {
		return nil, ErrNoServiceManager
	}
	spec, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg, err := ServiceConfig(spec)
	if err != nil {
		return nil, err
	}
	if isWindows {
		// Set after the service exists (afterInstall): kardianos sets it in
		// CreateService, which deletes the new service when the manager
		// refuses the setting.
		cfg.Option["DelayedAutoStart"] = false
	}
	s, err := service.New(noop{}, cfg)
	if err != nil {
		return nil, fmt.Errorf("service manager: %w", err)
	}
	return &Manager{spec: spec, svc: s, log: log}, nil
}

// noop is the kardianos Interface for a Manager: it only controls the
// service, Run is not used through it.
type noop struct{}

func (noop) Start(service.Service) error { return nil }
func (noop) Stop(service.Service) error  { return nil }

// Platform names the service manager ("linux-systemd", "windows-service").
func (m *Manager) Platform() string { return m.svc.Platform() }

// Status reports whether the service is installed and running.
func (m *Manager) Status() (Status, error) {
	st, err := m.svc.Status()
	switch {
	case errors.Is(err, service.ErrNotInstalled):
		return StatusNotInstalled, nil
	case err != nil && strings.Contains(err.Error(), "failed state"):
		return StatusFailed, nil
	case err != nil:
		return StatusUnknown, fmt.Errorf("service status: %w", err)
	case st == service.StatusRunning:
		return StatusRunning, nil
	case st == service.StatusStopped:
		return StatusStopped, nil
	}
	return StatusUnknown, nil
}

// Install registers the service for automatic start, or, when it is
// already registered, updates it in place (binary, arguments, unit,
// recovery). It does not start it.
func (m *Manager) Install() (upgraded bool, err error) {
	st, err := m.Status()
	if err != nil {
		return false, err
	}
	if prepareAccess != nil {
		w, err := prepareAccess(m.spec)
		if err != nil {
			return false, fmt.Errorf("install service %s: %w", m.spec.Name, err)
		}
		m.warnings = w
		for _, x := range w {
			m.log.Warn(x)
		}
	}
	if st != StatusNotInstalled {
		if err := m.update(); err != nil {
			return true, fmt.Errorf("update service %s: %w", m.spec.Name, err)
		}
		m.log.Info("service updated", "name", m.spec.Name)
		return true, nil
	}
	if err := m.svc.Install(); err != nil {
		return false, fmt.Errorf("install service %s: %w", m.spec.Name, err)
	}
	if err := m.afterInstall(); err != nil {
		return false, fmt.Errorf("install service %s: %w", m.spec.Name, err)
	}
	m.log.Info("service installed", "name", m.spec.Name)
	return false, nil
}

// Uninstall stops (when running) and removes the service.
func (m *Manager) Uninstall() error {
	st, err := m.Status()
	if err != nil {
		return err
	}
	if st == StatusNotInstalled {
		return ErrNotInstalled
	}
	if st == StatusRunning {
		if err := m.svc.Stop(); err != nil {
			return fmt.Errorf("stop service %s: %w", m.spec.Name, err)
		}
	}
	if err := m.uninstall(); err != nil {
		return fmt.Errorf("uninstall service %s: %w", m.spec.Name, err)
	}
	return nil
}

// Start starts the service.
func (m *Manager) Start() error { return m.control("start", m.svc.Start) }

// Stop stops the service.
func (m *Manager) Stop() error { return m.control("stop", m.svc.Stop) }

// Restart stops and starts the service.
func (m *Manager) Restart() error { return m.control("restart", m.svc.Restart) }

func (m *Manager) control(op string, f func() error) error {
	st, err := m.Status()
	if err != nil {
		return err
	}
	if st == StatusNotInstalled {
		return fmt.Errorf("%s service %s: %w (run 'tposagent install')", op, m.spec.Name, ErrNotInstalled)
	}
	if err := f(); err != nil {
		return fmt.Errorf("%s service %s: %w", op, m.spec.Name, err)
	}
	return nil
}
