package main

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"os"
	"strings"

	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

// installFromMSI is "tposagent install --msi": what the Windows installer's
// custom action runs (installer/packaging/msica), elevated, after the files
// and the service are in place. The msiexec properties come on stdin as
// NAME=value lines (never on a command line); everything it prints goes into
// the MSI log, so it prints no value. A non-zero exit fails the install with
// 1603 and Windows Installer rolls it back.
//
//   - No property given and no config file: the service the MSI registered
//     gets its recovery actions and Event Log source and stays stopped (a
//     technician finishes with "tposagent install").
//   - Otherwise, as "install --unattended" with those values: the existing
//     config is kept and only the given values change (an upgrade), a
//     missing required property or an invalid value fails before anything
//     is written, and the service is (re)started.
func installFromMSI(e *env, path string) error {
	set, err := installer.ReadMSIProperties(e.stdin)
	if err != nil {
		return fmt.Errorf("install --msi: %w", err)
	}
	var given []string
	for _, p := range installer.MSIProperties() {
		if _, ok := set[p.Key]; ok {
			given = append(given, p.Name)
		}
	}
	have, exists, err := existingValues(path)
	if err != nil {
		return fmt.Errorf("install --msi: %s", installer.MSIError(err))
	}
	if len(set) == 0 && !exists {
		fmt.Fprintf(e.stdout, "config:    none given (no msiexec property) and none at %s\n", path)
		spec := installer.Spec{ConfigPath: path, DataDir: config.DefaultDataDir()}
		if err := msiService(e, spec, false); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "service:   not started; finish with 'tposagent install' (or msiexec with the properties)\n")
		return nil
	}
	if len(given) > 0 {
		fmt.Fprintf(e.stdout, "msiexec:   properties given: %s\n", strings.Join(given, " "))
	}
	if missing := installer.MSIMissing(have, set); len(missing) > 0 {
		why := "required when any configuration property is given"
		if exists {
			why = "required, and empty in " + path
		}
		return fmt.Errorf("install --msi: missing msiexec property %s (%s)", strings.Join(missing, ", "), why)
	}
	res, err := installer.Bootstrap(installer.BootstrapOptions{ConfigPath: path, Set: set})
	if errors.Is(err, iofs.ErrPermission) {
		return fmt.Errorf("install --msi: %w (the custom action must run elevated: deferred, no impersonation)", err)
	}
	if err != nil {
		return fmt.Errorf("install --msi: %s", installer.MSIError(err))
	}
	printBootstrap(e, res, false)
	for _, w := range res.Config.Warnings() {
		fmt.Fprintf(e.stdout, "warning:   %s\n", w)
	}
	spec := installer.Spec{ConfigPath: res.ConfigPath, DataDir: res.DataDir, LogFile: res.Config.LogFile()}
	return msiService(e, spec, true)
}

// existingValues reads the installer fields of the config at path, if
// there is one.
func existingValues(path string) (map[string]string, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, iofs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("read config: %w", err)
	}
	c, err := config.Parse(data, path)
	if err != nil {
		return nil, true, fmt.Errorf("existing config %s (fix or move it, then run the MSI again): %w", path, err)
	}
	have := map[string]string{}
	for _, f := range installer.Fields() {
		have[f.Key] = f.Get(c)
	}
	return have, true, nil
}

// msiService updates the service the MSI registered (binary, arguments,
// recovery actions, Event Log source) and, when start is set, starts it
// (restarts it when it runs).
func msiService(e *env, spec installer.Spec, start bool) error {
	m, err := installer.NewManager(spec, nil)
	if err != nil {
		return fmt.Errorf("install --msi: %w", err)
	}
	before, err := m.Status()
	if err != nil {
		return fmt.Errorf("install --msi: %w", err)
	}
	_, err = m.Install()
	for _, w := range m.Warnings() {
		fmt.Fprintf(e.stdout, "warning:   %s\n", w)
	}
	if err != nil {
		return fmt.Errorf("install --msi: %w", err)
	}
	fmt.Fprintf(e.stdout, "service:   %s registered (%s, automatic start, recovery actions set)\n", installer.DefaultName, m.Platform())
	if !start {
		return nil
	}
	if err := startOrRestart(m, before); err != nil {
		return fmt.Errorf("install --msi: %w (check 'tposagent doctor' and the service log)", err)
	}
	fmt.Fprintf(e.stdout, "service:   started\n")
	return nil
}
