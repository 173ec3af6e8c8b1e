package installer

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/internal/config"
)

// sandbox is a fake root in a temp dir: its etc, var, var/lib, usr, home
// and tmp stand for the machine's, injected as the shared directories.
type sandbox struct {
	root string
	sys  SystemDirs
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	r := t.TempDir()
	s := &sandbox{root: r}
	for _, d := range []string{"etc", "var", "var/lib", "var/log", "usr", "home/kasa", "tmp", "ProgramData", "Windows"} {
		if err := os.MkdirAll(s.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
		s.sys.Shared = append(s.sys.Shared, s.p(d))
	}
	s.sys.Shared = append(s.sys.Shared, r)
	s.sys.Temp = []string{s.p("tmp")}
	s.sys.LogParents = []string{s.p("var/log")}
	if err := os.WriteFile(s.p("etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *sandbox) p(rel string) string { return filepath.Join(s.root, filepath.FromSlash(rel)) }

func (s *sandbox) bootstrap(cfgPath, dataDir string, dry bool) (*BootstrapResult, error) {
	return Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: full(dataDir), DryRun: dry, SystemDirs: &s.sys})
}

// setLogFile rewrites the config at path with log.file = logFile, as a
// person editing it would.
func setLogFile(t *testing.T, path, logFile string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data, path)
	if err != nil {
		t.Fatal(err)
	}
	c.Log.File = logFile
	if err := os.WriteFile(path, config.Encode(c), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFiles(t *testing.T, content string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInstallRefusesSharedDataDir: `install --data-dir /etc` (or "/",
// /var/lib, /usr, the home directory, a directory right in /tmp) is
// refused, dry run or not, with the reason, and the directory is left as
// it was; the old code made /etc 0700 (and the dry run showed
// "data dir: /etc" without a word).
func TestInstallRefusesSharedDataDir(t *testing.T) {
	s := newSandbox(t)
	cfgPath := s.p("etc/tposagent/config.toml")
	for _, tc := range []struct{ dir, want string }{
		{s.p("etc"), "a shared system directory"},
		{s.root, "a shared system directory"},
		{s.p("var/lib"), "a shared system directory"},
		{s.p("usr"), "a shared system directory"},
		{s.p("home/kasa"), "a shared system directory"},
		{s.p("tmp"), "a shared system directory"},
		{s.p("tmp/tposagent"), "a temporary directory"},
		{s.p("var/lib/tposagent/../../../etc"), "a shared system directory"},
	} {
		for _, dry := range []bool{true, false} {
			before, err := os.Stat(s.p("etc"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.bootstrap(cfgPath, tc.dir, dry)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "data_dir") {
				t.Errorf("data dir %s (dry run %v): %v, want a refusal saying %q", tc.dir, dry, err, tc.want)
			}
			after, _ := os.Stat(s.p("etc"))
			if after.Mode() != before.Mode() {
				t.Errorf("data dir %s: etc's mode changed %v -> %v", tc.dir, before.Mode(), after.Mode())
			}
			if _, err := os.Stat(cfgPath); err == nil {
				t.Fatalf("data dir %s: config written although install refused", tc.dir)
			}
		}
	}
	// A symlink to /etc is /etc.
	if runtime.GOOS != "windows" {
		if err := os.Symlink(s.p("etc"), s.p("var/lib/agentdata")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.bootstrap(cfgPath, s.p("var/lib/agentdata"), true); err == nil || !strings.Contains(err.Error(), "shared system directory") {
			t.Errorf("data dir through a symlink to etc: %v", err)
		}
	}
	// A directory of its own in /var/lib is what install is for.
	res, err := s.bootstrap(cfgPath, s.p("var/lib/tposagent"), false)
	if err != nil {
		t.Fatalf("install with a data dir of its own: %v", err)
	}
	m, err := ReadManifest(res.DataDir)
	if err != nil || m == nil || !m.DataDirCreated || !samePath(m.Config, cfgPath) || !samePath(m.ConfigDir, filepath.Dir(cfgPath)) {
		t.Fatalf("manifest %+v %v: want the data dir and config dir created, the config named", m, err)
	}
}

// TestInstallRefusesForeignLogFile: a log.file that is a shared directory,
// lies right in one, or is another program's existing file (the agent
// would append to /var/log/syslog and rotate it) is refused; a new file
// in /var/log is recorded in the manifest.
func TestInstallRefusesForeignLogFile(t *testing.T) {
	s := newSandbox(t)
	cfgPath := s.p("etc/tposagent/config.toml")
	dataDir := s.p("var/lib/tposagent")
	if _, err := s.bootstrap(cfgPath, dataDir, false); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, "Dec  6 kernel: …\n", s.p("var/log/syslog"))
	for _, tc := range []struct{ log, want string }{
		{s.p("etc"), "a shared system directory"},
		{s.p("etc/tposagent.log"), "lies directly in"},
		{s.p("var/lib/tposagent.log"), "lies directly in"},
		{s.p("agent.log"), "lies directly in"},
		{s.p("var/log/syslog"), "exists and tposagent did not create it"},
	} {
		setLogFile(t, cfgPath, tc.log)
		for _, dry := range []bool{true, false} {
			if _, err := s.bootstrap(cfgPath, dataDir, dry); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "log.file") {
				t.Errorf("log.file %s (dry run %v): %v, want a refusal saying %q", tc.log, dry, err, tc.want)
			}
		}
	}
	own := s.p("var/log/tposagent.log")
	setLogFile(t, cfgPath, own)
	if _, err := s.bootstrap(cfgPath, dataDir, false); err != nil {
		t.Fatalf("log.file %s: %v", own, err)
	}
	if m, err := ReadManifest(dataDir); err != nil || m == nil || !m.hasLog(own) {
		t.Fatalf("manifest %+v %v: want %s recorded", m, err, own)
	}
	// The agent made it since: a re-install keeps accepting it.
	writeFiles(t, "x", own, own+".1")
	if _, err := s.bootstrap(cfgPath, dataDir, false); err != nil {
		t.Fatalf("re-install with the agent's own log: %v", err)
	}
	// uninstall --purge removes that log and its rotations, not syslog.
	res, err := Purge(cfgPath, dataDir, own)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{own, own + ".1", dataDir, cfgPath, filepath.Dir(cfgPath)} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("purge kept %s (%+v)", p, res)
		}
	}
	if _, err := os.Stat(s.p("var/log/syslog")); err != nil {
		t.Errorf("purge removed syslog: %v", err)
	}
}

// TestPurgeKeepsLogFileNotRecorded: log.file edited after install to
// name a system log (/var/log/syslog, with .1 and .2): uninstall --purge
// leaves them, says so, and still removes the agent's own files. The old
// code deleted whatever log.file named, with its rotations.
func TestPurgeKeepsLogFileNotRecorded(t *testing.T) {
	s := newSandbox(t)
	cfgPath := s.p("etc/tposagent/config.toml")
	dataDir := s.p("var/lib/tposagent")
	if _, err := s.bootstrap(cfgPath, dataDir, false); err != nil {
		t.Fatal(err)
	}
	syslog := s.p("var/log/syslog")
	writeFiles(t, "system log\n", syslog, syslog+".1", syslog+".2")
	setLogFile(t, cfgPath, syslog)
	writeFiles(t, "x", filepath.Join(dataDir, "outbox.db"), filepath.Join(dataDir, "license.json"))
	res, err := Purge(cfgPath, dataDir, syslog)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{syslog, syslog + ".1", syslog + ".2"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("purge removed %s, which only the config named: %v", p, err)
		}
	}
	if !strings.Contains(strings.Join(res.Kept, "\n"), syslog+" (log.file, not recorded") {
		t.Errorf("kept %q: want the log file named", res.Kept)
	}
	for _, p := range []string{filepath.Join(dataDir, "outbox.db"), dataDir, cfgPath} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("purge kept the agent's %s", p)
		}
	}
}

// TestPurgeKeepsOtherProgramsFiles: a config (written by hand, or by a
// version before manifests) whose data_dir is another program's directory
// holding license.json and device.json: purge removes nothing in it. The
// old code removed every file with one of the agent's names.
func TestPurgeKeepsOtherProgramsFiles(t *testing.T) {
	s := newSandbox(t)
	other := s.p("opt/otherpos/data")
	files := []string{filepath.Join(other, "license.json"), filepath.Join(other, "device.json"), filepath.Join(other, "tposagent.log")}
	writeFiles(t, "the other program's\n", files...)
	cfgPath := s.p("etc/tposagent/config.toml")
	if _, err := s.bootstrap(cfgPath, s.p("var/lib/tposagent"), false); err != nil {
		t.Fatal(err)
	}
	res, err := Purge(cfgPath, other, filepath.Join(other, "tposagent.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("purge removed %s in a directory the agent did not make: %v", f, err)
		}
	}
	if !strings.Contains(strings.Join(res.Kept, "\n"), other+" (no manifest") {
		t.Errorf("kept %q: want the directory named as not the agent's", res.Kept)
	}
}

// TestPurgeDataDirBeforeManifests: a data dir an older install made (its
// marker, no manifest) loses the agent's files and goes; a log file
// outside it stays (no record says it is the agent's).
func TestPurgeDataDirBeforeManifests(t *testing.T) {
	s := newSandbox(t)
	data := s.p("srv/tposagent")
	writeFiles(t, "x", filepath.Join(data, CreatedMarker), filepath.Join(data, "outbox.db"), filepath.Join(data, "license.json"), filepath.Join(data, "tposagent.log.2"))
	logFile := s.p("var/log/tposagent.log")
	writeFiles(t, "x", logFile)
	cfgPath := s.p("etc/tposagent/config.toml")
	writeFiles(t, "x", cfgPath)
	res, err := Purge(cfgPath, data, logFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the older install's data dir is still there: %+v", res)
	}
	if _, err := os.Stat(logFile); err != nil {
		t.Errorf("purge removed a log outside the data dir without a manifest: %v", err)
	}
}

// TestPurgeDistrustsManifestNotRoots: the service user owns the data dir
// and could rewrite the manifest to name a system log as its own; root's
// purge then removes no log the manifest names.
func TestPurgeDistrustsManifestNotRoots(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() != 0 {
		t.Skip("needs root on a Unix system: the check compares the manifest's owner with root")
	}
	s := newSandbox(t)
	cfgPath := s.p("etc/tposagent/config.toml")
	dataDir := s.p("var/lib/tposagent")
	authLog := s.p("var/log/auth.log")
	writeFiles(t, "sshd: …\n", authLog)
	if _, err := s.bootstrap(cfgPath, dataDir, false); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(dataDir)
	if err != nil || m == nil {
		t.Fatal(m, err)
	}
	m.Logs = append(m.Logs, authLog)
	if err := writeManifest(dataDir, m); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(dataDir, ManifestName), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	res, err := Purge(cfgPath, dataDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(authLog); err != nil {
		t.Fatalf("purge removed a log named by a manifest root does not own: %v (%+v)", err, res)
	}
	if !strings.Contains(strings.Join(res.Kept, "\n"), "manifest is not root's") {
		t.Errorf("kept %q: want the distrust said", res.Kept)
	}
}
