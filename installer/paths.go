package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// SystemDirs are the directories install must not take over: a data dir
// may not be one of them (install makes its data dir private, 0700, and
// the service's own), and a log file may not lie directly in one (the
// agent rotates its log: renames it and its neighbours .1, .2 …).
type SystemDirs struct {
	// Shared are directories that belong to the system or to everyone:
	// "/", "/etc", "/var", "/var/lib", "/usr", the user's home,
	// %ProgramData%, C:\Windows, C:\Program Files … A drive root ("C:\",
	// "D:\") is always one.
	Shared []string
	// Temp are the temporary directories anyone may write to and the
	// system empties (/tmp, /var/tmp, /dev/shm, %TEMP%): a data dir or
	// log file directly in one is refused (another user may have made it
	// first, and a reboot loses the outbox). Deeper paths are the
	// operator's choice (the tests run there).
	Temp []string
	// LogParents are the shared directories where a log file directly
	// inside is the custom (/var/log/tposagent.log).
	LogParents []string
}

// DefaultSystemDirs is this machine's list, from the platform and the
// environment (HOME, ProgramData, SystemRoot, ProgramFiles, TEMP …).
func DefaultSystemDirs() SystemDirs {
	var d SystemDirs
	home, _ := os.UserHomeDir()
	if runtime.GOOS == "windows" {
		env := func(names ...string) []string {
			var out []string
			for _, n := range names {
				if v := os.Getenv(n); v != "" {
					out = append(out, v)
				}
			}
			return out
		}
		root := os.Getenv("SystemDrive")
		if root == "" {
			root = "C:"
		}
		root += `\`
		d.Shared = append([]string{root, filepath.Join(root, "Windows"), filepath.Join(root, "ProgramData"),
			filepath.Join(root, "Program Files"), filepath.Join(root, "Program Files (x86)"), filepath.Join(root, "Users")},
			env("SystemRoot", "windir", "ProgramData", "ALLUSERSPROFILE", "ProgramFiles", "ProgramFiles(x86)", "ProgramW6432",
				"CommonProgramFiles", "PUBLIC", "USERPROFILE", "APPDATA", "LOCALAPPDATA")...)
		if sr := os.Getenv("SystemRoot"); sr != "" {
			d.Shared = append(d.Shared, filepath.Join(sr, "System32"), filepath.Join(sr, "SysWOW64"))
		}
		d.Temp = env("TEMP", "TMP")
		if sr := os.Getenv("SystemRoot"); sr != "" {
			d.Temp = append(d.Temp, filepath.Join(sr, "Temp"))
		}
	} else {
		d.Shared = []string{"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt",
			"/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/usr/bin", "/usr/lib", "/usr/local",
			"/usr/local/bin", "/usr/local/lib", "/usr/sbin", "/usr/share", "/var", "/var/cache", "/var/lib", "/var/local",
			"/var/log", "/var/opt", "/var/run", "/var/spool"}
		d.Temp = []string{"/tmp", "/var/tmp", "/dev/shm"}
		d.LogParents = []string{"/var/log"}
	}
	if home != "" {
		d.Shared = append(d.Shared, home)
	}
	d.Shared = append(d.Shared, d.Temp...)
	return d
}

// variants is p cleaned and, when it (or its longest existing parent)
// resolves through symlinks elsewhere, that path too: /srv/data -> /etc is
// /etc.
func variants(p string) []string {
	p = filepath.Clean(p)
	out := []string{p}
	rest := ""
	for cur := p; ; cur = filepath.Dir(cur) {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			if full := filepath.Join(r, rest); !samePath(full, p) {
				out = append(out, full)
			}
			return out
		}
		if filepath.Dir(cur) == cur {
			return out
		}
		rest = filepath.Join(filepath.Base(cur), rest)
	}
}

func isRoot(p string) bool { p = filepath.Clean(p); return filepath.Dir(p) == p }

func inList(p string, list []string) (string, bool) {
	for _, s := range list {
		if s != "" && samePath(p, s) {
			return filepath.Clean(s), true
		}
	}
	return "", false
}

// checkDataDir refuses a data dir that is a shared system directory or
// lies directly in a temporary one. (Whether it holds files the agent did
// not make is checkDataDirContent.)
func (d SystemDirs) checkDataDir(dir string) error {
	for _, p := range variants(dir) {
		if isRoot(p) {
			return fmt.Errorf("data_dir %s is the root of a drive: use a directory of its own (e.g. %s)", dir, exampleDataDir())
		}
		if s, ok := inList(p, d.Shared); ok {
			return fmt.Errorf("data_dir %s is %sa shared system directory: install would make it private to the agent; use a directory of its own (--data-dir, e.g. %s)", dir, through(dir, s), exampleDataDir())
		}
		if s, ok := inList(filepath.Dir(p), d.Temp); ok {
			return fmt.Errorf("data_dir %s lies directly in %s, a temporary directory anyone can write to and the system empties: use a directory of its own (e.g. %s)", dir, s, exampleDataDir())
		}
	}
	return nil
}

// checkLogFile refuses a log file that is a shared directory or lies
// directly in one (other than the log directory, /var/log).
func (d SystemDirs) checkLogFile(path string) error {
	for _, p := range variants(path) {
		if isRoot(p) {
			return fmt.Errorf("log.file %s is the root of a drive", path)
		}
		if s, ok := inList(p, d.Shared); ok {
			return fmt.Errorf("log.file %s is %sa shared system directory: name a file in a directory of its own, or leave log.file empty (the data dir)", path, through(path, s))
		}
		parent := filepath.Dir(p)
		if _, ok := inList(parent, d.LogParents); ok {
			continue
		}
		if isRoot(parent) {
			return fmt.Errorf("log.file %s lies directly in the root of a drive: name a file in a directory of its own, or leave log.file empty (the data dir)", path)
		}
		if s, ok := inList(parent, d.Shared); ok {
			return fmt.Errorf("log.file %s lies directly in %s, a shared system directory (the agent rotates its log: it renames the file and its neighbours .1, .2 …): name a file in a directory of its own, or leave log.file empty (the data dir)", path, s)
		}
	}
	return nil
}

// through names the shared directory a path reaches when that is not the
// path as written ("/srv/x is /etc, a shared …"); "" when it is.
func through(path, shared string) string {
	if samePath(path, shared) {
		return ""
	}
	return shared + ", "
}

func exampleDataDir() string {
	if runtime.GOOS == "windows" {
		return `C:\ProgramData\tposagent\data`
	}
	return "/var/lib/tposagent"
}

// foreignFiles lists (sorted, at most 5 and "…") the entries of dir that
// are not files the agent makes. A missing dir has none.
func foreignFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var others []string
	for _, e := range entries {
		if n := e.Name(); e.IsDir() || !AgentFile(n) {
			others = append(others, n)
		}
	}
	sort.Strings(others)
	if len(others) > 5 {
		others = append(others[:5], "…")
	}
	return others, nil
}

// checkDataDirContent refuses an existing data dir that holds files the
// agent did not make, unless install made it or adopted it before (its
// manifest, or the marker of an older install, is there): a re-install
// into its own directory where someone put a file of theirs is fine.
func checkDataDirContent(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data_dir %s is not a directory", dir)
	}
	for _, own := range []string{ManifestName, CreatedMarker} {
		if _, err := os.Lstat(filepath.Join(dir, own)); err == nil {
			return nil
		}
	}
	others, err := foreignFiles(dir)
	if err != nil {
		return fmt.Errorf("data_dir %s: %w", dir, err)
	}
	if len(others) > 0 {
		return fmt.Errorf("data_dir %s holds files tposagent did not create (%s): install would make the directory private to the agent; choose a new or empty directory (e.g. %s)",
			dir, strings.Join(others, ", "), exampleDataDir())
	}
	return nil
}
