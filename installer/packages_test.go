package installer

import (
	"debug/pe"
	"fmt"
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
			checkMSIConfiguration(t, msi, run)
		}
	})
}

// checkMSIConfiguration checks how an MSI configures the till (installer
// README, "Windows installer"): the deferred, elevated, hidden-target
// custom action DLL that hands every property to "tposagent install --msi",
// the property that carries them, MsiHiddenProperties, the upgrade rows and
// the refused downgrade.
func checkMSIConfiguration(t *testing.T, msi string, run func(*testing.T, string, ...string) string) {
	t.Helper()
	rows := func(table string) map[string][]string {
		m := map[string][]string{}
		out := run(t, "msiinfo", "export", msi, table)
		// Rows are tab-separated, one a line, but a value may hold line
		// breaks: a line that does not start a row continues the one before.
		lines := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")
		if len(lines) < 3 {
			t.Fatalf("%s %s: no rows:\n%s", msi, table, out)
		}
		cols := len(strings.Split(lines[0], "\t"))
		var cur []string
		flush := func() {
			if len(cur) > 0 {
				m[cur[0]] = cur
			}
			cur = nil
		}
		for _, l := range lines[3:] {
			f := strings.Split(l, "\t")
			if cur != nil && len(cur) < cols {
				cur[len(cur)-1] += "\n" + f[0]
				cur = append(cur, f[1:]...)
				continue
			}
			flush()
			if l != "" {
				cur = f
			}
		}
		flush()
		return m
	}
	want := func(table, key string, cols ...string) []string {
		t.Helper()
		r, ok := rows(table)[key]
		if !ok {
			t.Errorf("%s: %s has no row %s", msi, table, key)
			return nil
		}
		for i, c := range cols {
			if c != "*" && (i+1 >= len(r) || r[i+1] != c) {
				t.Errorf("%s: %s row %q = %q, want column %d %q", msi, table, key, r, i+1, c)
			}
		}
		return r
	}

	// The deferred, elevated action with a hidden target, and the type 51
	// action that sets its CustomActionData: the installed exe first, then
	// every property once.
	want("CustomAction", "TposagentConfigure", "11265", "TposagentCA", "Configure")
	set := want("CustomAction", "SetTposagentConfigure", "51", "TposagentConfigure")
	if len(set) > 3 {
		lines := strings.Split(set[3], "\n")
		if lines[0] != "[#tposagent.exe]" {
			t.Errorf("%s: CustomActionData starts with %q, want the installed exe", msi, lines[0])
		}
		var got []string
		for _, l := range lines[1:] {
			if l != "" {
				got = append(got, l)
			}
		}
		var exp []string
		for _, p := range MSIProperties() {
			exp = append(exp, p.Name+"=["+p.Name+"]")
		}
		if strings.Join(got, " ") != strings.Join(exp, " ") {
			t.Errorf("%s: CustomActionData lines\n%q\nwant\n%q", msi, got, exp)
		}
	}
	seq := rows("InstallExecuteSequence")
	num := func(action string) int {
		r, ok := seq[action]
		if !ok || len(r) < 3 {
			t.Errorf("%s: InstallExecuteSequence has no %s", msi, action)
			return -1
		}
		var n int
		fmt.Sscan(r[2], &n)
		return n
	}
	if r := seq["TposagentConfigure"]; len(r) < 2 || r[1] != `NOT (REMOVE~="ALL")` {
		t.Errorf("%s: TposagentConfigure condition %q, want NOT (REMOVE~=\"ALL\")", msi, r)
	}
	// Deferred after the files and the service, before the end of the
	// script; the properties set before it is scheduled; the old product
	// removed inside the transaction (a failed upgrade rolls back to it).
	if !(num("InstallServices") < num("TposagentConfigure") && num("TposagentConfigure") < num("InstallFinalize")) {
		t.Errorf("%s: TposagentConfigure is not between InstallServices and InstallFinalize", msi)
	}
	if !(num("CostFinalize") < num("SetTposagentConfigure") && num("SetTposagentConfigure") < num("TposagentConfigure")) {
		t.Errorf("%s: SetTposagentConfigure is not between CostFinalize and TposagentConfigure", msi)
	}
	if !(num("InstallInitialize") < num("RemoveExistingProducts") && num("RemoveExistingProducts") < num("InstallFiles")) {
		t.Errorf("%s: RemoveExistingProducts is not right after InstallInitialize", msi)
	}

	hidden := strings.Join(MSIHiddenProperties(), ";")
	if hidden != "TPOSL_PASSWORD;ODUYO_API_KEY;ODUYO_PASSWORD" {
		t.Errorf("secret properties %q", hidden)
	}
	want("Property", "MsiHiddenProperties", hidden+";TposagentConfigure")
	if r := want("Property", "SecureCustomProperties", "*"); len(r) > 1 {
		secure := ";" + r[1] + ";"
		for _, p := range MSIProperties() {
			if !strings.Contains(secure, ";"+p.Name+";") {
				t.Errorf("%s: SecureCustomProperties lacks %s", msi, p.Name)
			}
		}
	}

	// Major upgrade: older versions removed, a newer one detected, and a
	// launch condition that refuses the downgrade with a message.
	up := run(t, "msiinfo", "export", msi, "Upgrade")
	for _, w := range []string{"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"} {
		if !strings.Contains(up, w) {
			t.Errorf("%s: Upgrade lacks %s:\n%s", msi, w, up)
		}
	}
	want("LaunchCondition", "NOT WIX_DOWNGRADE_DETECTED", "A newer version of tposagent is already installed.")

	// The custom action DLL, for the package's architecture, exporting
	// Configure.
	dir := t.TempDir()
	dll := filepath.Join(dir, "ca.dll")
	c := exec.Command("msiinfo", "extract", msi, "Binary.TposagentCA")
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s: extract the custom action DLL: %v", msi, err)
	}
	if err := os.WriteFile(dll, out, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := pe.Open(dll)
	if err != nil {
		t.Fatalf("%s: the custom action is not a PE file: %v", msi, err)
	}
	defer f.Close()
	machine := uint16(pe.IMAGE_FILE_MACHINE_AMD64)
	if strings.HasSuffix(msi, "_386.msi") {
		machine = pe.IMAGE_FILE_MACHINE_I386
	}
	if f.Machine != machine || f.Characteristics&pe.IMAGE_FILE_DLL == 0 {
		t.Errorf("%s: custom action machine %#x dll %v, want %#x and a DLL", msi, f.Machine, f.Characteristics&pe.IMAGE_FILE_DLL != 0, machine)
	}
	// Only system DLLs: a mingw runtime DLL would not be on a till.
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		switch strings.ToLower(l) {
		case "kernel32.dll", "msi.dll", "msvcrt.dll", "user32.dll":
		default:
			t.Errorf("%s: the custom action DLL needs %s, which Windows does not have", msi, l)
		}
	}
	if !strings.Contains(string(out), "Configure") {
		t.Errorf("%s: the custom action DLL does not export Configure", msi)
	}
}
