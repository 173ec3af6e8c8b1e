package installer

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/internal/config"
)

// TestPackages inspects what "make packages" built. Run it with
// "make check-packages" (TPOSAGENT_PACKAGES=<dist dir>).
func TestPackages(t *testing.T) {
	dist := os.Getenv("TPOSAGENT_PACKAGES")
	if dist == "" {
		t.Skip("no packages to check: run 'make packages && make check-packages' (sets TPOSAGENT_PACKAGES=dist)")
	}
	glob := func(pattern string, want int) []string {
		t.Helper()
		m, _ := filepath.Glob(filepath.Join(dist, pattern))
		if len(m) != want {
			t.Fatalf("%s: %d files %v, want %d", pattern, len(m), m, want)
		}
		return m
	}
	run := func(t *testing.T, name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	need := func(t *testing.T, tool, pkg string) {
		t.Helper()
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (apt-get install %s): not checked", tool, pkg)
		}
	}
	contains := func(t *testing.T, what, out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}
	wantUnit, err := RenderUnit(UnitParams{Executable: "/usr/bin/tposagent", ConfigPath: "/etc/tposagent/config.toml", DataDir: "/var/lib/tposagent"})
	if err != nil {
		t.Fatal(err)
	}
	glob("*/tposagent", 2)
	glob("*/tposagent.exe", 2)

	t.Run("deb", func(t *testing.T) {
		need(t, "dpkg-deb", "dpkg")
		for _, deb := range glob("*.deb", 2) {
			info := run(t, "dpkg-deb", "--info", deb)
			contains(t, deb+" info", info, "Package: tposagent", "postinst", "prerm", "conffiles")
			list := run(t, "dpkg-deb", "--contents", deb)
			contains(t, deb+" contents", list,
				"-rwxr-xr-x root/root", "./usr/bin/tposagent",
				"./usr/lib/systemd/system/tposagent.service", "./usr/lib/modules-load.d/tposagent.conf",
				"-rw------- root/root", "./etc/tposagent/config.toml",
				"drwx------ root/root         0", "./var/lib/tposagent/")
			contains(t, deb+" postinst", run(t, "dpkg-deb", "--info", deb, "postinst"), "useradd --system", "usermod -a -G dialout tposagent",
				"chown -R tposagent:tposagent /var/lib/tposagent", "tposagent install --unattended")
			x := t.TempDir()
			run(t, "dpkg-deb", "-x", deb, x)
			unit, err := os.ReadFile(filepath.Join(x, "usr/lib/systemd/system/tposagent.service"))
			if err != nil || string(unit) != wantUnit {
				t.Errorf("%s: unit differs from RenderUnit: %v\n%s", deb, err, unit)
			}
			if ml, err := os.ReadFile(filepath.Join(x, "usr/lib/modules-load.d/tposagent.conf")); err != nil || string(ml) != ModulesLoad {
				t.Errorf("%s: modules-load.d file differs: %v\n%s", deb, err, ml)
			}
			data, err := os.ReadFile(filepath.Join(x, "etc/tposagent/config.toml"))
			if err != nil {
				t.Fatal(err)
			}
			c, err := config.Parse(data, "config.toml")
			if err != nil {
				t.Fatalf("%s: default config does not parse: %v", deb, err)
			}
			if c.API.Token != "" || c.DataDir != "/var/lib/tposagent" {
				t.Errorf("%s: default config has a token or data dir %q", deb, c.DataDir)
			}
			if strings.HasSuffix(deb, "_"+runtime.GOARCH+".deb") && runtime.GOOS == "linux" {
				v := run(t, filepath.Join(x, "usr/bin/tposagent"), "version")
				if strings.Contains(v, "commit unknown") || strings.Contains(v, "built unknown") {
					t.Errorf("binary not stamped: %s", v)
				}
			}
		}
	})
	t.Run("rpm", func(t *testing.T) {
		need(t, "rpm", "rpm")
		for _, rpm := range glob("*.rpm", 2) {
			contains(t, rpm+" info", run(t, "rpm", "-qip", rpm), "Name        : tposagent", "License")
			contains(t, rpm+" files", run(t, "rpm", "-qlvp", rpm),
				"-rwxr-xr-x", "/usr/bin/tposagent", "/usr/lib/systemd/system/tposagent.service", "/usr/lib/modules-load.d/tposagent.conf",
				"-rw-------", "/etc/tposagent/config.toml", "drwx------", "/var/lib/tposagent")
			contains(t, rpm+" config files", run(t, "rpm", "-qp", "--configfiles", rpm), "/etc/tposagent/config.toml")
			contains(t, rpm+" scripts", run(t, "rpm", "-qp", "--scripts", rpm), "postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet",
				"tposagent install --unattended", "useradd --system", "usermod -a -G dialout tposagent", "chown -R tposagent:tposagent /var/lib/tposagent",
				"systemctl stop tposagent.service")
		}
	})
	t.Run("msi", func(t *testing.T) {
		need(t, "msiinfo", "msitools")
		for _, msi := range glob("*.msi", 2) {
			pf := "ProgramFiles64Folder"
			if strings.HasSuffix(msi, "_386.msi") {
				pf = "ProgramFilesFolder"
			}
			contains(t, msi+" File", run(t, "msiinfo", "export", msi, "File"), "tposagent.exe")
			contains(t, msi+" Directory", run(t, "msiinfo", "export", msi, "Directory"), "INSTALLDIR\t"+pf+"\ttposagent")
			svc := run(t, "msiinfo", "export", msi, "ServiceInstall")
			// Type 16 own process, start 2 automatic.
			contains(t, msi+" ServiceInstall", svc, "tposagent\tTPOS till agent\t16\t2\t", `run --service --config "[CommonAppDataFolder]tposagent\config.toml"`)
			contains(t, msi+" ServiceControl", run(t, "msiinfo", "export", msi, "ServiceControl"), "tposagent\t162\t")
			contains(t, msi+" Registry", run(t, "msiinfo", "export", msi, "Registry"), `EventLog\Application\tposagent`, "EventMessageFile")
		}
	})
}
