// Command mkpkg builds the release artifacts in one go: stamped binaries for
// windows/amd64, windows/386, linux/amd64 and linux/arm64, a .deb and an
// .rpm per Linux architecture (nfpm, run with "go run …@v2.45.2" so that it
// never enters go.mod) and an MSI per Windows architecture (wixl and msibuild
// from the Debian packages "wixl" and "msitools", its custom action DLL with
// mingw-w64; see installer/README.md, "Windows"), plus SHA256SUMS.
//
// Usage, from the repository root (or "make packages"):
//
//	go run ./installer/cmd/mkpkg [-out dist] [-version 1.2.3] [-targets …] [-skip-msi] [-skip-nfpm] [-packagers deb,rpm]
//
// The version defaults to $VERSION, else "git describe --tags", else
// 0.0.0-dev; the commit to "git rev-parse"; the build date to
// $SOURCE_DATE_EPOCH or now (UTC).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

const (
	nfpmModule = "github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2"
	pkgPath    = "github.com/tposagent/tposagent/agent"
)

// Paths inside the Linux packages.
const (
	linuxBin     = "/usr/bin/tposagent"
	linuxConfig  = "/etc/tposagent/config.toml"
	linuxDataDir = "/var/lib/tposagent"
)

type build struct {
	root, out            string
	version, commit, day string
	log                  io.Writer
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "mkpkg: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	out := fs.String("out", "dist", "output directory (emptied first)")
	version := fs.String("version", os.Getenv("VERSION"), "version to stamp and package (default: git describe, else 0.0.0-dev)")
	targets := fs.String("targets", "windows/amd64,windows/386,linux/amd64,linux/arm64", "GOOS/GOARCH list")
	skipMSI := fs.Bool("skip-msi", false, "do not build the MSI packages")
	skipNFPM := fs.Bool("skip-nfpm", false, "do not build the .deb and .rpm packages")
	packagers := fs.String("packagers", "deb,rpm", "the Linux package formats to build")
	if err := fs.Parse(args); err != nil {
		return err
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	b := &build{root: root, log: stdout}
	b.out, err = filepath.Abs(*out)
	if err != nil {
		return err
	}
	b.version = strings.TrimPrefix(*version, "v")
	if b.version == "" {
		b.version = gitVersion(root)
	}
	b.commit = gitOutput(root, "rev-parse", "--short=12", "HEAD")
	if b.commit == "" {
		b.commit = "unknown"
	}
	b.day = buildDate()
	if !*skipMSI {
		for _, tool := range []string{"wixl", "msibuild"} {
			if _, err := exec.LookPath(tool); err != nil {
				return fmt.Errorf("%s not found: apt-get install wixl msitools (or pass -skip-msi)", tool)
			}
		}
	}
	if err := os.RemoveAll(b.out); err != nil {
		return err
	}
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "mkpkg: version %s, commit %s, date %s → %s\n", b.version, b.commit, b.day, b.out)

	var artifacts []string
	for _, t := range strings.Split(*targets, ",") {
		goos, goarch, ok := strings.Cut(strings.TrimSpace(t), "/")
		if !ok {
			return fmt.Errorf("target %q: want GOOS/GOARCH", t)
		}
		bin, err := b.binary(goos, goarch)
		if err != nil {
			return err
		}
		artifacts = append(artifacts, bin)
		switch {
		case goos == "linux" && !*skipNFPM:
			pkgs, err := b.linuxPackages(goarch, bin, strings.Split(*packagers, ","))
			if err != nil {
				return err
			}
			artifacts = append(artifacts, pkgs...)
		case goos == "windows" && !*skipMSI:
			msi, err := b.msi(goarch, bin)
			if err != nil {
				return err
			}
			artifacts = append(artifacts, msi)
		}
	}
	if err := os.RemoveAll(filepath.Join(b.out, "work")); err != nil {
		return err
	}
	return writeSums(b.out, artifacts, stdout)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run mkpkg inside the tposagent module")
	}
	return filepath.Dir(mod), nil
}

func gitOutput(dir string, args ...string) string {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

var semverish = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+`)

func gitVersion(root string) string {
	v := strings.TrimPrefix(gitOutput(root, "describe", "--tags", "--dirty"), "v")
	if semverish.MatchString(v) {
		return v
	}
	return "0.0.0-dev"
}

func buildDate() string {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC().Format(time.RFC3339)
		}
	}
	return time.Now().UTC().Format(time.RFC3339)
}

// pkgVersion is the version for deb and rpm: rpm forbids '-', and '~'
// sorts before the release in both.
func (b *build) pkgVersion() string { return strings.ReplaceAll(b.version, "-", "~") }

// msiVersion is the numeric x.y.z Windows Installer needs.
func (b *build) msiVersion() string {
	if v := semverish.FindString(b.version); v != "" {
		return v
	}
	return "0.0.0"
}

func (b *build) cmd(dir string, env []string, name string, args ...string) error {
	c := exec.Command(name, args...)
	c.Dir = dir
	c.Env = append(os.Environ(), env...)
	c.Stdout = b.log
	c.Stderr = os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

func (b *build) binary(goos, goarch string) (string, error) {
	name := "tposagent"
	if goos == "windows" {
		name += ".exe"
	}
	dst := filepath.Join(b.out, goos+"-"+goarch, name)
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s -X %s.BuildDate=%s", pkgPath, b.version, pkgPath, b.commit, pkgPath, b.day)
	env := []string{"GOOS=" + goos, "GOARCH=" + goarch, "CGO_ENABLED=0"}
	if err := b.cmd(b.root, env, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", dst, "./cmd/tposagent"); err != nil {
		return "", err
	}
	fmt.Fprintf(b.log, "built %s\n", rel(b.out, dst))
	return dst, nil
}

func (b *build) linuxPackages(goarch, bin string, packagers []string) ([]string, error) {
	work := filepath.Join(b.out, "work", "linux-"+goarch)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(bin, filepath.Join(work, "tposagent"), 0o755); err != nil {
		return nil, err
	}
	unit, err := installer.RenderUnit(installer.UnitParams{Executable: linuxBin, ConfigPath: linuxConfig, DataDir: linuxDataDir})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "tposagent.service"), []byte(unit), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "modules-load.conf"), []byte(installer.ModulesLoad), 0o644); err != nil {
		return nil, err
	}
	c := config.Default()
	c.DataDir = linuxDataDir
	if err := os.WriteFile(filepath.Join(work, "config.toml"), config.Encode(&c), 0o600); err != nil {
		return nil, err
	}
	// nfpm expands the environment only in some fields: fill in the
	// template ourselves.
	vars := map[string]string{
		"PKG_ARCH":    goarch,
		"PKG_VERSION": b.pkgVersion(),
		"PKG_WORK":    work,
		"PKG_SCRIPTS": filepath.Join(b.root, "installer", "packaging"),
	}
	tmpl, err := os.ReadFile(filepath.Join(b.root, "installer", "packaging", "nfpm.yaml"))
	if err != nil {
		return nil, err
	}
	var missing []string
	yaml := os.Expand(string(tmpl), func(k string) string {
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("nfpm.yaml: unknown variables %v", missing)
	}
	nfpmConfig := filepath.Join(work, "nfpm.yaml")
	if err := os.WriteFile(nfpmConfig, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	var made []string
	for _, packager := range packagers {
		if packager != "deb" && packager != "rpm" {
			return nil, fmt.Errorf("packager %q: want deb or rpm", packager)
		}
		before, _ := filepath.Glob(filepath.Join(b.out, "*."+packager))
		err := b.cmd(b.root, nil, "go", "run", nfpmModule, "package",
			"--config", nfpmConfig,
			"--packager", packager, "--target", b.out+string(filepath.Separator))
		if err != nil {
			return nil, err
		}
		after, _ := filepath.Glob(filepath.Join(b.out, "*."+packager))
		made = append(made, newFiles(before, after)...)
	}
	return made, nil
}

func (b *build) msi(goarch, bin string) (string, error) {
	work := filepath.Join(b.out, "work", "windows-"+goarch)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	// wixl resolves File/@Source relative to the .wxs: keep them together.
	if err := copyFile(bin, filepath.Join(work, "tposagent.exe"), 0o755); err != nil {
		return "", err
	}
	if err := copyFile(filepath.Join(b.root, "installer", "packaging", "tposagent.wxs"), filepath.Join(work, "tposagent.wxs"), 0o644); err != nil {
		return "", err
	}
	if err := b.buildCustomActionDLL(goarch, filepath.Join(work, customActionDLL)); err != nil {
		return "", err
	}
	arch, win64, pf := "x64", "yes", "ProgramFiles64Folder"
	if goarch == "386" {
		arch, win64, pf = "x86", "no", "ProgramFilesFolder"
	}
	dst := filepath.Join(b.out, fmt.Sprintf("tposagent_%s_windows_%s.msi", b.pkgVersion(), goarch))
	err := b.cmd(work, nil, "wixl", "-a", arch,
		"-D", "Version="+b.msiVersion(), "-D", "Exe=tposagent.exe", "-D", "CustomActionDll="+customActionDLL,
		"-D", "Win64="+win64, "-D", "ProgramFilesDir="+pf,
		"-o", dst, "tposagent.wxs")
	if err != nil {
		return "", err
	}
	for _, q := range msiFixups() {
		if err := b.cmd(work, nil, "msibuild", dst, "-q", q); err != nil {
			return "", err
		}
	}
	fmt.Fprintf(b.log, "built %s\n", rel(b.out, dst))
	return dst, nil
}

// customActionDLL is the MSI's custom action (installer/packaging/msica).
const customActionDLL = "tposagentca.dll"

// Custom action types (Windows Installer SDK, "Custom Action In-Script
// Execution Options" and "Return Processing Options").
const (
	caDLLFromBinary = 1      // msidbCustomActionTypeDll + msidbCustomActionTypeBinaryData
	caSetProperty   = 51     // msidbCustomActionTypeTextData + msidbCustomActionTypeProperty
	caInScript      = 0x0400 // deferred
	caNoImpersonate = 0x0800 // runs as LocalSystem (elevated)
	caHideTarget    = 0x2000 // CustomActionData never written to the log
	// ConfigureActionType is the deferred, elevated, hidden-target DLL
	// action that runs "tposagent install --msi".
	ConfigureActionType = caDLLFromBinary | caInScript | caNoImpersonate | caHideTarget
)

// msiFixups are the SQL edits msibuild applies to wixl's output for what
// wixl cannot express:
//   - the custom action's hidden-target bit (wixl has no HideTarget), so
//     that Windows Installer never logs its CustomActionData, and the plain
//     type 51 for the action that sets it;
//   - SecureCustomProperties with the configuration properties, so that
//     Windows Installer passes them to the elevated part of the install
//     also when the install was started from a user's session;
//   - RemoveExistingProducts right after InstallInitialize (wixl puts it
//     before), so that on Windows a failed upgrade rolls back to the
//     version that was installed instead of leaving none.
func msiFixups() []string {
	secure := []string{"WIX_DOWNGRADE_DETECTED", "WIX_UPGRADE_DETECTED"}
	for _, p := range installer.MSIProperties() {
		secure = append(secure, p.Name)
	}
	return []string{
		fmt.Sprintf("UPDATE `CustomAction` SET `Type` = %d WHERE `Action` = 'TposagentConfigure'", ConfigureActionType),
		fmt.Sprintf("UPDATE `CustomAction` SET `Type` = %d WHERE `Action` = 'SetTposagentConfigure'", caSetProperty),
		fmt.Sprintf("UPDATE `Property` SET `Value` = '%s' WHERE `Property` = 'SecureCustomProperties'", strings.Join(secure, ";")),
		"UPDATE `InstallExecuteSequence` SET `Sequence` = 1510 WHERE `Action` = 'RemoveExistingProducts'",
	}
}

// buildCustomActionDLL builds the custom action DLL for goarch with mingw-w64.
func (b *build) buildCustomActionDLL(goarch, dst string) error {
	cc := "x86_64-w64-mingw32-gcc"
	if goarch == "386" {
		cc = "i686-w64-mingw32-gcc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		return fmt.Errorf("%s not found: apt-get install gcc-mingw-w64-x86-64 gcc-mingw-w64-i686 (it builds the MSI's custom action DLL), or pass -skip-msi", cc)
	}
	src := filepath.Join(b.root, "installer", "packaging", "msica")
	return b.cmd(src, nil, cc, "-O2", "-Wall", "-Werror", "-shared", "-s", "-static-libgcc",
		"-Wl,--kill-at", "-Wl,--enable-stdcall-fixup", "-Wl,--no-insert-timestamp",
		"-o", dst, "tposagentca.c", "tposagentca.def", "-lmsi")
}

func newFiles(before, after []string) []string {
	seen := map[string]bool{}
	for _, f := range before {
		seen[f] = true
	}
	var n []string
	for _, f := range after {
		if !seen[f] {
			n = append(n, f)
		}
	}
	return n
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil {
		return r
	}
	return p
}

func writeSums(out string, files []string, log io.Writer) error {
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), rel(out, f))
	}
	if err := os.WriteFile(filepath.Join(out, "SHA256SUMS"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	fmt.Fprint(log, b.String())
	return nil
}
