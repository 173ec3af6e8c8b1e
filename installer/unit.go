package installer

import (
	"errors"
	"fmt"
	"strings"
)

// UnitParams are the inputs of the systemd unit.
type UnitParams struct {
	Name        string // service name; default "tposagent"
	Description string
	Executable  string // absolute path of the binary
	ConfigPath  string // absolute path of the config file
	DataDir     string // absolute; made writable under ProtectSystem=strict
	// ExtraWritable are more absolute paths the agent writes (a log file
	// outside data_dir). Missing paths are ignored by systemd ("-" prefix).
	ExtraWritable []string
	// SerialGroup is the supplementary group for serial ports; default
	// "dialout" (Debian/Ubuntu, Fedora). "-" for none.
	SerialGroup string
	// User is the system user (and group) the agent runs as; default
	// ServiceUser. "root" runs it as root (not recommended).
	User string
}

// LockDir is where serial ports' UUCP lock files live (FHS /var/lock, a
// link to /run/lock on current distributions). Where it is 1777 (Debian,
// Ubuntu) the service user may create its lock there; where it belongs to
// group "lock" (0775), add the user to that group for the agent to take
// one (it still honours the locks of others without).
const LockDir = "/run/lock"

// ServiceUser is the system user the Linux service runs as. The package
// and "tposagent install" create it (a member of the serial group); the
// data dir is its own, the config file is readable by its group.
const ServiceUser = "tposagent"

// SerialDevices are the device groups (the names in /proc/devices) the
// service may open: on-board and PCI serial ports, USB serial adapters
// (FTDI, PL2303, CH340) and USB CDC-ACM devices. Other device nodes are
// closed to it, except the pseudo devices every service gets (/dev/null,
// /dev/urandom, …). A site whose register sits behind another kind of
// device adds a drop-in with DeviceAllow=.
//
// systemd resolves a group when the service starts, from /proc/devices: a
// group whose driver is not loaded yet (ttyUSB before the first USB serial
// adapter, ttyACM) is left out until the next start. The packages
// therefore load those drivers at boot (ModulesLoad in
// /usr/lib/modules-load.d); without a package, restart the service after
// plugging in an adapter for the first time, or add the same file.
var SerialDevices = []string{"char-ttyS", "char-ttyUSB", "char-ttyACM"}

// ModulesLoad is the modules-load.d file of the packages: the USB serial
// drivers, so that their device groups exist when the service starts.
const ModulesLoad = "# tposagent: USB serial drivers loaded at boot, so that the service's\n" +
	"# DeviceAllow=char-ttyUSB and char-ttyACM find their device groups.\n" +
	"usbserial\ncdc_acm\n"

// RenderUnit renders the systemd unit file. It is a pure function: tests
// check its text with systemd-analyze verify and, in a container, with
// systemd-analyze security.
//
// The unit restarts the agent always (StartLimitIntervalSec=0: it never
// gives up), orders it after network-online.target, lets systemd create
// /var/lib/NAME (owned by the service user) and /etc/NAME, and gives the
// process the least it needs: its own system user with the serial group,
// no capabilities, the system-service set of system calls, only Internet
// and local sockets, a read-only OS with only the data dir (and a log
// directory outside it) and the serial lock directory writable, no home directories, a private /tmp,
// other processes invisible, and of the devices only the serial ports.
func RenderUnit(p UnitParams) (string, error) {
	if p.Name == "" {
		p.Name = DefaultName
	}
	if p.Description == "" {
		p.Description = "TPOS till agent (licence registration and Ödüyo outbox)"
	}
	if p.SerialGroup == "" {
		p.SerialGroup = "dialout"
	}
	if p.User == "" {
		p.User = ServiceUser
	}
	for _, f := range []struct{ name, v string }{{"executable", p.Executable}, {"config path", p.ConfigPath}, {"data dir", p.DataDir}} {
		if err := checkUnitPath(f.v); err != nil {
			return "", fmt.Errorf("render unit: %s: %w", f.name, err)
		}
	}
	for _, w := range p.ExtraWritable {
		if err := checkUnitPath(w); err != nil {
			return "", fmt.Errorf("render unit: writable path: %w", err)
		}
	}
	if strings.ContainsAny(p.Name, " /\\\n") || strings.ContainsAny(p.Description, "\n\r") {
		return "", errors.New("render unit: name or description contains a space, slash or newline")
	}
	if !validName(p.User) || (p.SerialGroup != "-" && !validName(p.SerialGroup)) {
		return "", fmt.Errorf("render unit: user %q or serial group %q is not a valid name", p.User, p.SerialGroup)
	}

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# Written by 'tposagent install'; re-running it rewrites this file.")
	w("[Unit]")
	w("Description=%s", escapeSpecifiers(p.Description))
	w("Documentation=https://github.com/tposagent/tposagent")
	w("Wants=network-online.target")
	w("After=network-online.target")
	w("StartLimitIntervalSec=0")
	w("")
	w("[Service]")
	w("Type=simple")
	w("ExecStart=%s run --service --config %s", quoteExecArg(p.Executable), quoteExecArg(p.ConfigPath))
	w("Restart=always")
	w("RestartSec=5")
	w("TimeoutStopSec=20")
	w("KillMode=mixed")
	if p.User != "root" {
		w("User=%s", p.User)
		w("Group=%s", p.User)
	}
	if p.SerialGroup != "-" {
		w("SupplementaryGroups=%s", p.SerialGroup)
	}
	w("StateDirectory=%s", p.Name)
	w("StateDirectoryMode=0700")
	w("ConfigurationDirectory=%s", p.Name)
	w("ConfigurationDirectoryMode=0750")
	w("UMask=0077")
	w("NoNewPrivileges=yes")
	w("CapabilityBoundingSet=")
	w("AmbientCapabilities=")
	w("ProtectSystem=strict")
	writable := append([]string{p.DataDir}, p.ExtraWritable...)
	for _, d := range writable {
		w("ReadWritePaths=%s", quotePathArg("-"+d))
	}
	// UUCP lock files of the serial port (/var/lock links to /run/lock):
	// the agent takes one while it talks to the ÖKC, so that a POS that
	// honours them keeps out; it reads them either way.
	w("ReadWritePaths=%s", quotePathArg("-"+LockDir))
	w("ProtectHome=yes")
	w("PrivateTmp=yes")
	w("DevicePolicy=closed")
	for _, d := range SerialDevices {
		w("DeviceAllow=%s rw", d)
	}
	w("ProtectKernelTunables=yes")
	w("ProtectKernelModules=yes")
	w("ProtectKernelLogs=yes")
	w("ProtectControlGroups=yes")
	w("ProtectClock=yes")
	w("ProtectHostname=yes")
	w("ProtectProc=invisible")
	w("RestrictSUIDSGID=yes")
	w("RestrictRealtime=yes")
	w("RestrictNamespaces=yes")
	w("LockPersonality=yes")
	w("MemoryDenyWriteExecute=yes")
	w("RemoveIPC=yes")
	w("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6")
	w("SystemCallArchitectures=native")
	w("SystemCallFilter=@system-service")
	w("SystemCallFilter=~@privileged @resources")
	w("SystemCallErrorNumber=EPERM")
	w("")
	w("[Install]")
	w("WantedBy=multi-user.target")
	return b.String(), nil
}

func checkUnitPath(p string) error {
	switch {
	case p == "":
		return errors.New("is empty")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is not absolute", p)
	case strings.ContainsAny(p, "\n\r\x00"):
		return fmt.Errorf("%q contains a control character", p)
	case strings.Contains(p, "{{"):
		// kardianos/service renders SystemdScript as a template.
		return fmt.Errorf("%q contains {{", p)
	}
	return nil
}

// escapeSpecifiers doubles '%' so systemd does not expand specifiers.
func escapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// quoteExecArg quotes one ExecStart argument the way systemd reads it.
func quoteExecArg(s string) string {
	s = escapeSpecifiers(s)
	s = strings.ReplaceAll(s, "$", "$$")
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// quotePathArg quotes a path list entry when it holds a space.
func quotePathArg(s string) string {
	s = escapeSpecifiers(s)
	if !strings.ContainsAny(s, " \t\"'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// validName reports whether s is a plain user or group name.
func validName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r == '_', i > 0 && (r >= '0' && r <= '9' || r == '-'):
		default:
			return false
		}
	}
	return true
}
