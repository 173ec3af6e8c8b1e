package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/tposagent/tposagent/internal/config"
)

// CreatedMarker is the file Bootstrap leaves in a data or config
// directory that it created: Purge removes such a directory (once the
// agent's files are gone and nothing else is in it); a directory without
// the marker was made by someone else and is kept.
const CreatedMarker = ".tposagent-created"

// agentFileNames are the files the agent makes in its data dir: the outbox
// (with its compaction file, its lock file on Windows and quarantined
// copies), the licence and
// device caches, the identity the POS reported, the last device read's
// trace, the local API address, the log and its rotations, and the
// temporary files of their atomic writes. cmd/tposagent's tests check that
// every data-dir file name the agent declares matches.
var agentFileNames = regexp.MustCompile(`^(` +
	`outbox\.db|outbox\.db\.compact|outbox\.db\.lock|outbox\.db\.corrupt-[^/\\]+|` +
	`license\.json|device\.json|pos-device\.json|device-last\.trace|api\.addr|` +
	`tposagent\.log|tposagent\.log\.[0-9]+|` +
	`\.(license\.json|device\.json|pos-device\.json|device-last\.trace|api\.addr|config\.toml)\.tmp-[^/\\]+|` +
	regexp.QuoteMeta(CreatedMarker) + `)$`)

// AgentFile reports whether name (a base name) is a file the agent makes in
// its data dir, and so one that Purge removes.
func AgentFile(name string) bool { return agentFileNames.MatchString(name) }

// PurgeResult says what Purge removed and what it kept.
type PurgeResult struct {
	Removed []string // files and directories removed
	Kept    []string // directories kept, each "path (reason)"
}

// Purge removes what the agent and Bootstrap made, and nothing else: the
// agent's files in dataDir (see AgentFile), the log file logFile and its
// rotations when it lies elsewhere, and the config file. A directory is
// removed only when it is the agent's (Bootstrap created it and left
// CreatedMarker, or it is the platform's default location, which is
// named after the agent) and holds nothing else; a directory such as
// /var/lib or D:\TPOS\data that was there before always survives.
func Purge(configPath, dataDir, logFile string) (*PurgeResult, error) {
	res := &PurgeResult{}
	if dataDir != "" && !filepath.IsAbs(dataDir) {
		return res, fmt.Errorf("purge data dir: %q is not absolute", dataDir)
	}
	if configPath != "" {
		if err := os.Remove(configPath); err == nil {
			res.Removed = append(res.Removed, configPath)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("purge config: %w", err)
		}
	}
	if dataDir != "" {
		if err := purgeDir(res, filepath.Clean(dataDir), config.DefaultDataDir()); err != nil {
			return res, fmt.Errorf("purge data dir: %w", err)
		}
	}
	if logFile != "" && filepath.IsAbs(logFile) {
		if err := purgeLog(res, filepath.Clean(logFile)); err != nil {
			return res, fmt.Errorf("purge log: %w", err)
		}
	}
	if configPath != "" {
		dir := filepath.Dir(filepath.Clean(configPath))
		if dataDir == "" || !samePath(dir, dataDir) {
			if err := purgeDir(res, dir, filepath.Dir(config.DefaultPath())); err != nil {
				return res, fmt.Errorf("purge config dir: %w", err)
			}
		}
	}
	return res, nil
}

// purgeDir removes the agent's files in dir, then dir itself when it is
// the agent's and empty. defaultDir is the platform default for it.
func purgeDir(res *PurgeResult, dir, defaultDir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	own := samePath(dir, defaultDir)
	if _, err := os.Lstat(filepath.Join(dir, CreatedMarker)); err == nil {
		own = true
	}
	var others []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !AgentFile(name) || name == CreatedMarker {
			if name != CreatedMarker {
				others = append(others, name)
			}
			continue
		}
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		res.Removed = append(res.Removed, p)
	}
	switch {
	case !own:
		res.Kept = append(res.Kept, dir+" (not created by tposagent)")
	case len(others) > 0:
		sort.Strings(others)
		if len(others) > 5 {
			others = append(others[:5], "…")
		}
		res.Kept = append(res.Kept, fmt.Sprintf("%s (holds files tposagent did not make: %s)", dir, strings.Join(others, ", ")))
	default:
		if err := os.Remove(filepath.Join(dir, CreatedMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.Remove(dir); err != nil {
			return err
		}
		res.Removed = append(res.Removed, dir)
	}
	return nil
}

// purgeLog removes a log file and its numbered rotations.
func purgeLog(res *PurgeResult, path string) error {
	names := []string{path}
	more, _ := filepath.Glob(globEscape(path) + ".[0-9]*")
	names = append(names, more...)
	for _, p := range names {
		if p != path && strings.Trim(strings.TrimPrefix(p, path+"."), "0123456789") != "" {
			continue
		}
		if err := os.Remove(p); err == nil {
			res.Removed = append(res.Removed, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func globEscape(p string) string {
	if isWindows {
		return strings.NewReplacer("[", "[[]", "*", "[*]", "?", "[?]").Replace(p)
	}
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "*", `\*`, "?", `\?`).Replace(p)
}

func samePath(a, b string) bool {
	a, b = filepath.Clean(a), filepath.Clean(b)
	if isWindows {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// markCreated leaves CreatedMarker in a directory Bootstrap created.
func markCreated(dir string) error {
	const text = "This directory was created by 'tposagent install'; 'tposagent uninstall --purge' removes it when only the agent's files are in it.\n"
	p := filepath.Join(dir, CreatedMarker)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		return err
	}
	return securePath(p, false)
}
