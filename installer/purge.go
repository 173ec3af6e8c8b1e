package installer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/tposagent/tposagent/internal/config"
)

// CreatedMarker is the file Bootstrap leaves in a data or config
// directory that it created: Purge removes such a directory (once the
// agent's files are gone and nothing else is in it); a directory without
// the marker was made by someone else and is kept.
const CreatedMarker = ".tposagent-created"

// agentFileNames are the files the agent makes in its data dir: the outbox
// (with its compaction file, its lock file on Windows, the record of what
// it committed and quarantined copies), the licence and
// device caches, the identity the POS reported, the last device read's
// trace, the local API address and its wait note, the log and its rotations, and the
// temporary files of their atomic writes. cmd/tposagent's tests check that
// every data-dir file name the agent declares matches.
var agentFileNames = regexp.MustCompile(`^(` +
	`outbox\.db|outbox\.db\.compact|outbox\.db\.lock|outbox\.db\.state|outbox\.db\.corrupt-[^/\\]+|` +
	`license\.json|device\.json|pos-device\.json|device-last\.trace|api\.addr|api\.wait|` +
	`tposagent\.log|tposagent\.log\.[0-9]+|` +
	`\.(license\.json|device\.json|pos-device\.json|device-last\.trace|api\.addr|api\.wait|outbox\.db\.state|config\.toml)\.tmp-[^/\\]+|` +
	regexp.QuoteMeta(CreatedMarker) + `|` + regexp.QuoteMeta(ManifestName) + `|\.` + regexp.QuoteMeta(ManifestName) + `\.tmp-[^/\\]+` + `)$`)

// AgentFile reports whether name (a base name) is a file the agent makes in
// its data dir, and so one that Purge removes.
func AgentFile(name string) bool { return agentFileNames.MatchString(name) }

// ManifestName is the file in the data dir where install records what it
// and the agent created: the config file, the data dir (when install made
// it), the config dir (likewise) and log files outside the data dir.
// Purge removes only what it names, plus the agent's own file names
// (AgentFile) inside the data dir it lies in.
const ManifestName = ".tposagent-manifest.json"

// Manifest is the content of ManifestName.
type Manifest struct {
	Note           string   `json:"note"`
	DataDir        string   `json:"data_dir"`
	DataDirCreated bool     `json:"data_dir_created"`
	Config         string   `json:"config,omitempty"`
	ConfigDir      string   `json:"config_dir,omitempty"` // created by install
	Logs           []string `json:"logs,omitempty"`       // log files outside the data dir (their rotations too)

	untrusted bool // not root's while root reads it: its Logs are not believed
}

const manifestNote = "Written by 'tposagent install'. 'tposagent uninstall --purge' removes only what this file names and the agent's own files in this directory."

// ReadManifest reads the manifest in dataDir; nil, nil when there is none.
func ReadManifest(dataDir string) (*Manifest, error) {
	p := filepath.Join(dataDir, ManifestName)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<16))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v): remove what you want gone by hand", p, err)
	}
	if fi, err := f.Stat(); err == nil && !manifestTrusted(fi) {
		m.untrusted = true
	}
	return &m, nil
}

func (m *Manifest) hasLog(p string) bool {
	for _, l := range m.Logs {
		if samePath(l, p) {
			return true
		}
	}
	return false
}

func writeManifest(dataDir string, m *Manifest) error {
	m.Note = manifestNote
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dataDir, ManifestName), append(data, '\n'))
}

// PurgeResult says what Purge removed and what it kept.
type PurgeResult struct {
	Removed []string // files and directories removed
	Kept    []string // paths kept, each "path (reason)"
}

// Purge removes what install and the agent made, and nothing else. With a
// manifest in dataDir (see ManifestName): the agent's files in dataDir
// (see AgentFile), the config file and the log files the manifest names
// (a log with its numbered rotations), and the data and config
// directories when install created them and nothing else is left in
// them. A log file or config path that the manifest does not name is
// kept, whatever the config says.
//
// Without a manifest (a data dir from a version before manifests, or one
// the agent never owned): the agent's file names are removed from dataDir
// only when it is the agent's (an older install created it and left
// CreatedMarker, or it is the platform's default location, named after
// the agent); in any other directory nothing is removed (license.json
// there may be another program's). A log file outside the data dir is
// never removed without a manifest. The config file named on the command
// line is removed only when it is the platform's default config path or
// it parses as a tposagent config whose data_dir key names dataDir (issue
// 23.6: an empty or foreign file given with --config is kept).
func Purge(configPath, dataDir, logFile string) (*PurgeResult, error) {
	res := &PurgeResult{}
	if dataDir != "" && !filepath.IsAbs(dataDir) {
		return res, fmt.Errorf("purge data dir: %q is not absolute", dataDir)
	}
	if configPath != "" {
		if abs, err := filepath.Abs(configPath); err == nil {
			configPath = abs // as install recorded it
		}
	}
	var m *Manifest
	if dataDir != "" {
		dataDir = filepath.Clean(dataDir)
		var err error
		if m, err = ReadManifest(dataDir); err != nil {
			return res, fmt.Errorf("purge: %w", err)
		}
	}
	if configPath != "" {
		if m != nil && !samePath(m.Config, configPath) {
			res.Kept = append(res.Kept, configPath+" (the manifest in the data dir does not name it)")
		} else if why := configNotOurs(configPath, dataDir); m == nil && why != "" {
			res.Kept = append(res.Kept, configPath+" (no manifest in the data dir, and "+why+": delete it by hand if it is the agent's)")
		} else if err := os.Remove(configPath); err == nil {
			res.Removed = append(res.Removed, configPath)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("purge config: %w", err)
		}
	}
	if dataDir != "" {
		if err := purgeDataDir(res, dataDir, m); err != nil {
			return res, fmt.Errorf("purge data dir: %w", err)
		}
	}
	if m != nil && m.untrusted && len(m.Logs) > 0 {
		res.Kept = append(res.Kept, fmt.Sprintf("%s (its manifest is not root's, so the log files it names are not removed: %s)", dataDir, strings.Join(m.Logs, ", ")))
	} else if m != nil {
		for _, l := range m.Logs {
			if filepath.IsAbs(l) {
				if err := purgeLog(res, filepath.Clean(l)); err != nil {
					return res, fmt.Errorf("purge log: %w", err)
				}
			}
		}
	}
	if logFile != "" && filepath.IsAbs(logFile) && (dataDir == "" || !samePath(filepath.Dir(logFile), dataDir)) && (m == nil || !m.hasLog(logFile)) {
		if _, err := os.Lstat(logFile); err == nil {
			res.Kept = append(res.Kept, logFile+" (log.file, not recorded as the agent's by install: delete it and its rotations by hand if they are the agent's)")
		}
	}
	if configPath != "" {
		dir := filepath.Dir(filepath.Clean(configPath))
		if dataDir == "" || !samePath(dir, dataDir) {
			own := samePath(dir, filepath.Dir(config.DefaultPath())) || (m != nil && samePath(m.ConfigDir, dir))
			if _, err := os.Lstat(filepath.Join(dir, CreatedMarker)); err == nil {
				own = true
			}
			if err := purgeDir(res, dir, own, false); err != nil {
				return res, fmt.Errorf("purge config dir: %w", err)
			}
		}
	}
	return res, nil
}

// configNotOurs says why the config file at path, without a manifest, is
// not known to be the agent's ("" when it is): it is the default config
// path, or it parses as a tposagent config that sets data_dir to dataDir.
// An empty file parses as a config of defaults, so a data_dir of its own
// is required: a file that names nothing could be anyone's.
func configNotOurs(path, dataDir string) string {
	if samePath(path, config.DefaultPath()) {
		return ""
	}
	data, err := config.ReadFile(path)
	if errors.Is(err, config.ErrNotFound) {
		return "" // nothing to remove
	}
	if err != nil {
		return "it cannot be read as a tposagent config"
	}
	c, err := config.Parse(data, path)
	if err != nil {
		return "it is not a tposagent config"
	}
	var raw struct {
		DataDir *string `toml:"data_dir"`
	}
	if err := toml.Unmarshal(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), &raw); err != nil || raw.DataDir == nil {
		return "it names no data_dir"
	}
	c.Resolve()
	if dataDir == "" || !samePath(c.DataDir, dataDir) {
		return fmt.Sprintf("its data_dir %s is not the data dir purged", c.DataDir)
	}
	return ""
}

// purgeDataDir removes the agent's files in the data dir and the dir when
// it is the agent's and left empty; see Purge for the rules.
func purgeDataDir(res *PurgeResult, dir string, m *Manifest) error {
	if m != nil {
		return purgeDir(res, dir, m.DataDirCreated, true)
	}
	own := samePath(dir, config.DefaultDataDir())
	if _, err := os.Lstat(filepath.Join(dir, CreatedMarker)); err == nil {
		own = true
	}
	if !own {
		if _, err := os.Stat(dir); err == nil {
			res.Kept = append(res.Kept, dir+" (no manifest of tposagent in it and not made by its install: nothing in it removed; delete the agent's files by hand)")
		}
		return nil
	}
	return purgeDir(res, dir, true, true)
}

// purgeDir removes the agent's files in dir when files is true (the
// manifest and the marker last), then dir itself when own and nothing
// else is in it.
func purgeDir(res *PurgeResult, dir string, own, files bool) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var others []string
	for _, e := range entries {
		name := e.Name()
		if name == CreatedMarker || name == ManifestName {
			continue
		}
		if !files || e.IsDir() || !AgentFile(name) {
			others = append(others, name)
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
		if files { // the agent's files are gone: so is its record of them
			if err := os.Remove(filepath.Join(dir, ManifestName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		res.Kept = append(res.Kept, dir+" (not created by tposagent)")
	case len(others) > 0:
		sort.Strings(others)
		if len(others) > 5 {
			others = append(others[:5], "…")
		}
		res.Kept = append(res.Kept, fmt.Sprintf("%s (holds files tposagent did not make: %s)", dir, strings.Join(others, ", ")))
	default:
		for _, n := range []string{ManifestName, CreatedMarker} {
			if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
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
