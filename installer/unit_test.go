//go:build linux

package installer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testUnitParams(t *testing.T, dir string) UnitParams {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return UnitParams{Executable: exe, ConfigPath: filepath.Join(dir, "etc", "config.toml"), DataDir: filepath.Join(dir, "data")}
}

func TestRenderUnitContents(t *testing.T) {
	unit, err := RenderUnit(UnitParams{Executable: "/usr/bin/tposagent", ConfigPath: "/etc/tposagent/config.toml", DataDir: "/var/lib/tposagent"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nWants=network-online.target\n",
		"\nAfter=network-online.target\n",
		"\nExecStart=/usr/bin/tposagent run --service --config /etc/tposagent/config.toml\n",
		"\nRestart=always\n",
		"\nRestartSec=5\n",
		"\nStateDirectory=tposagent\n",
		"\nConfigurationDirectory=tposagent\n",
		"\nNoNewPrivileges=yes\n",
		"\nProtectSystem=strict\n",
		"\nReadWritePaths=-/var/lib/tposagent\n",
		"\nReadWritePaths=-/run/lock\n", // the serial port's UUCP lock file
		"\nSupplementaryGroups=dialout\n",
		"\nUser=tposagent\n",
		"\nGroup=tposagent\n",
		"\nCapabilityBoundingSet=\n",
		"\nSystemCallFilter=@system-service\n",
		"\nProtectProc=invisible\n",
		"\nProtectHostname=yes\n",
		"\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n",
		"\nDevicePolicy=closed\n",
		"\nDeviceAllow=char-ttyUSB rw\n",
		"\nWantedBy=multi-user.target\n",
		"Ödüyo",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(unit, "PrivateDevices") {
		t.Error("PrivateDevices would hide the fiscal device's serial port")
	}
}

func TestRenderUnitRejects(t *testing.T) {
	good := UnitParams{Executable: "/usr/bin/tposagent", ConfigPath: "/etc/tposagent/config.toml", DataDir: "/var/lib/tposagent"}
	for name, mut := range map[string]func(p *UnitParams){
		"relative exe":    func(p *UnitParams) { p.Executable = "tposagent" },
		"empty config":    func(p *UnitParams) { p.ConfigPath = "" },
		"newline":         func(p *UnitParams) { p.DataDir = "/var/lib/x\nExecStartPre=/bin/rm" },
		"template":        func(p *UnitParams) { p.DataDir = "/var/{{Name}}" },
		"windows path":    func(p *UnitParams) { p.DataDir = `C:\ProgramData\tposagent` },
		"name with space": func(p *UnitParams) { p.Name = "tpos agent" },
		"user with space": func(p *UnitParams) { p.User = "tpos agent" },
		"user injection":  func(p *UnitParams) { p.User = "x\nExecStartPre=/bin/rm" },
		"group injection": func(p *UnitParams) { p.SerialGroup = "dialout\nUser=root" },
	} {
		p := good
		mut(&p)
		if _, err := RenderUnit(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestQuoteExecArg(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/tposagent":   "/usr/bin/tposagent",
		"/opt/tpos agent/bin":  `"/opt/tpos agent/bin"`,
		`/a"b`:                 `"/a\"b"`,
		"/srv/100%/config":     "/srv/100%%/config",
		"/srv/$HOME/config":    "/srv/$$HOME/config",
		`/srv/back\slash dir/`: `"/srv/back\\slash dir/"`,
	} {
		if got := quoteExecArg(in); got != want {
			t.Errorf("quoteExecArg(%q) = %q, want %q", in, got, want)
		}
	}
}

// systemdAnalyze runs "systemd-analyze verify" on unit and fails on any
// complaint: it exits 0 on unknown keys and bad values, so stderr counts.
func systemdAnalyze(t *testing.T, dir, unit string) {
	t.Helper()
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (apt-get install systemd); unit not verified")
	}
	path := filepath.Join(dir, "tposagent.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
}

func TestRenderUnitSystemdAnalyze(t *testing.T) {
	dir := t.TempDir()
	p := testUnitParams(t, dir)
	unit, err := RenderUnit(p)
	if err != nil {
		t.Fatal(err)
	}
	systemdAnalyze(t, dir, unit)

	// Paths with spaces, % and $ still make a valid unit.
	odd := filepath.Join(dir, "tpos agent 100% $x")
	p.ConfigPath = filepath.Join(odd, "config.toml")
	p.DataDir = filepath.Join(odd, "data")
	p.ExtraWritable = []string{filepath.Join(odd, "logs")}
	unit, err = RenderUnit(p)
	if err != nil {
		t.Fatal(err)
	}
	systemdAnalyze(t, t.TempDir(), unit)
}

// The check itself must be able to fail: a typo in a key is caught.
func TestSystemdAnalyzeCatchesTypos(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not found (apt-get install systemd)")
	}
	dir := t.TempDir()
	unit, err := RenderUnit(testUnitParams(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(unit, "ProtectSystem=strict", "ProtectSystem=strikt", 1)
	path := filepath.Join(dir, "tposagent.service")
	os.WriteFile(path, []byte(bad), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", path).CombinedOutput()
	if err == nil && len(strings.TrimSpace(string(out))) == 0 {
		t.Fatal("systemd-analyze accepted ProtectSystem=strikt: the verify test proves nothing")
	}
}

func FuzzRenderUnit(f *testing.F) {
	f.Add("/usr/bin/tposagent", "/etc/tposagent/config.toml", "/var/lib/tposagent")
	f.Add("/opt/a b/tposagent", "/etc/x%y/config.toml", "/var/lib/$d\\e")
	f.Add("/x", "/y\n[Service]", "/z")
	f.Fuzz(func(t *testing.T, exe, cfg, data string) {
		unit, err := RenderUnit(UnitParams{Executable: exe, ConfigPath: cfg, DataDir: data})
		if err != nil {
			return
		}
		// Whatever the paths, they cannot add lines or sections.
		n := 0
		for _, line := range strings.Split(unit, "\n") {
			if strings.HasPrefix(line, "ExecStart=") {
				n++
			}
			if strings.HasPrefix(line, "[") && line != "[Unit]" && line != "[Service]" && line != "[Install]" {
				t.Fatalf("path injected a section: %q", line)
			}
		}
		if n != 1 {
			t.Fatalf("%d ExecStart lines", n)
		}
		if strings.Count(unit, "\n[Service]\n") != 1 {
			t.Fatal("sections changed")
		}
	})
}
