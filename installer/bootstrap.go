package installer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tposagent/tposagent/internal/atomicfile"

	"github.com/tposagent/tposagent/internal/config"
)

// ErrMissing is returned (wrapped) by Bootstrap when required values are
// missing and no Ask function may supply them (--unattended, no terminal).
var ErrMissing = errors.New("missing required values")

// TokenBytes is the size of a generated local API token (hex: twice as many
// characters).
const TokenBytes = 32

// BootstrapOptions are the inputs of Bootstrap.
type BootstrapOptions struct {
	// ConfigPath is the config file; default config.DefaultPath(). Made
	// absolute.
	ConfigPath string
	// Set holds the values given explicitly (flags, environment), by
	// dotted key (see Fields). Only these change an existing config.
	Set map[string]string
	// Ask, when non-nil, is called for each required field that is still
	// empty and returns its value. Nil means never ask: missing values are
	// an ErrMissing error naming the flag and variable.
	Ask func(f Field) (string, error)
	// DryRun computes the result but writes nothing.
	DryRun bool
	// Rand is the token's randomness; default crypto/rand.
	Rand io.Reader
	// Logger; nil discards.
	Logger *slog.Logger
	// SystemDirs are the directories a data dir may not be and a log
	// file may not lie in; nil: DefaultSystemDirs() (tests pass a
	// sandbox's).
	SystemDirs *SystemDirs
}

// BootstrapResult says what Bootstrap found and did.
type BootstrapResult struct {
	ConfigPath     string
	DataDir        string         // absolute
	Config         *config.Config // as written (relative paths resolved)
	Created        bool           // there was no config file before
	TokenGenerated bool
	Changed        []string // keys whose value changed in an existing file (no values: some are secrets)
	Wrote          bool     // the file was (re)written
}

// Bootstrap prepares everything the service needs before the service
// manager is involved: it reads the existing config (a re-install keeps it,
// merging only the values in Set), asks for missing required values,
// generates the local API token when there is none, validates, writes the
// config atomically readable only by its owner (0600; on Windows
// Administrators and SYSTEM), and creates the data directory (0700). The
// data directory's contents are never touched.
func Bootstrap(opts BootstrapOptions) (*BootstrapResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	path := opts.ConfigPath
	if path == "" {
		path = config.DefaultPath()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: config path %s: %w", path, err)
	}
	path = abs
	res := &BootstrapResult{ConfigPath: path}

	var c *config.Config
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d := config.Default()
		d.Path = path
		c = &d
		res.Created = true
	case err != nil:
		return nil, fmt.Errorf("bootstrap: read config: %w", err)
	default:
		c, err = config.Parse(old, path)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: existing config (fix or move it, then re-run install): %w", err)
		}
	}
	before := snapshot(c)

	fields := Fields()
	for _, f := range fields {
		v, ok := opts.Set[f.Key]
		if !ok {
			continue
		}
		if err := f.Set(c, v); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	for k := range opts.Set {
		if _, ok := FieldByKey(k); !ok {
			return nil, fmt.Errorf("bootstrap: unknown key %q", k)
		}
	}

	var missing []Field
	for _, f := range fields {
		if f.Required && strings.TrimSpace(f.Get(c)) == "" {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 && opts.Ask == nil {
		var names []string
		for _, f := range missing {
			names = append(names, fmt.Sprintf("--%s (or %s)", f.Flag, f.Env))
		}
		return nil, fmt.Errorf("%w: %s", ErrMissing, strings.Join(names, ", "))
	}
	for _, f := range missing {
		v, err := opts.Ask(f)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: ask for %s: %w", f.Key, err)
		}
		if strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%w: --%s (or %s) is required", ErrMissing, f.Flag, f.Env)
		}
		if err := f.Set(c, v); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}

	if c.API.Token == "" {
		tok, err := NewToken(opts.Rand)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		c.API.Token = config.Secret(tok)
		res.TokenGenerated = true
	}

	// Validate what the agent will see: relative paths resolved against
	// the config file's directory.
	check := *c
	check.Path = path
	check.Resolve()
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	// The agent accepts any token (with a warning); an installer sets
	// only strong ones.
	if len(c.API.Token) < MinTokenLen {
		return nil, fmt.Errorf("bootstrap: api.token must be at least %d characters (leave it out to generate one)", MinTokenLen)
	}
	res.Config = &check
	res.DataDir = check.DataDir
	sys := opts.SystemDirs
	if sys == nil {
		d := DefaultSystemDirs()
		sys = &d
	}
	manifest, logNew, err := checkPaths(*sys, res.DataDir, check.LogFile())
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}

	after := snapshot(c)
	for k, v := range after {
		if !res.Created && before[k] != v {
			res.Changed = append(res.Changed, k)
		}
	}
	sort.Strings(res.Changed)

	data := config.Encode(c)
	back, err := config.Parse(data, path)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: encoded config does not parse back: %w", err)
	}
	for k, v := range snapshot(back) {
		if v != after[k] {
			// Never print the value: it may be a secret.
			return nil, fmt.Errorf("bootstrap: the value of %s does not survive the TOML file (invalid UTF-8 or control characters?)", k)
		}
	}
	if opts.DryRun {
		return res, nil
	}

	cfgDirCreated, err := ensureDir(filepath.Dir(path), false)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: config dir: %w", err)
	}
	if res.Created || !bytes.Equal(old, data) {
		if err := WriteFileAtomic(path, data); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		res.Wrote = true
	} else if err := securePath(path, false); err != nil {
		return nil, fmt.Errorf("bootstrap: secure config: %w", err)
	}
	dataCreated, err := ensureDir(res.DataDir, true)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: data dir: %w", err)
	}
	// Record what is the agent's, for uninstall --purge.
	if manifest == nil {
		manifest = &Manifest{}
	}
	manifest.DataDir = res.DataDir
	manifest.DataDirCreated = manifest.DataDirCreated || dataCreated || ownDir(res.DataDir, config.DefaultDataDir())
	manifest.Config = path
	if cfgDir := filepath.Dir(path); (cfgDirCreated || ownDir(cfgDir, filepath.Dir(config.DefaultPath()))) && !samePath(cfgDir, res.DataDir) {
		manifest.ConfigDir = cfgDir
	}
	if logNew != "" && !manifest.hasLog(logNew) {
		manifest.Logs = append(manifest.Logs, logNew)
	}
	if err := writeManifest(res.DataDir, manifest); err != nil {
		return nil, fmt.Errorf("bootstrap: data dir manifest: %w", err)
	}
	log.Info("bootstrap done", "config", path, "data_dir", res.DataDir, "created", res.Created,
		"token_generated", res.TokenGenerated, "changed", strings.Join(res.Changed, ","))
	return res, nil
}

// snapshot maps every installer field to its value (for change detection).
func snapshot(c *config.Config) map[string]string {
	m := map[string]string{}
	for _, f := range Fields() {
		m[f.Key] = f.Get(c)
	}
	return m
}

// MinTokenLen is the shortest api.token install accepts.
const MinTokenLen = 16

// NewToken returns TokenBytes random bytes from r as lower-case hex.
func NewToken(r io.Reader) (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("generate api token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ensureDir creates dir (0700). A data dir is always made private; a
// config dir only when this call created it (it may be a shared /etc).
// It reports whether it created dir.
func ensureDir(dir string, always bool) (bool, error) {
	_, err := os.Stat(dir)
	created := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	if created || always {
		if err := securePath(dir, true); err != nil {
			return created, fmt.Errorf("secure %s: %w", dir, err)
		}
	}
	if created {
		if err := markCreated(dir); err != nil {
			return created, fmt.Errorf("mark %s as created by the installer: %w", dir, err)
		}
	}
	return created, nil
}

// ownDir: dir is the agent's although this install did not create it: an
// older install did (its marker is there), or it is the platform's
// default location, named after the agent.
func ownDir(dir, defaultDir string) bool {
	if samePath(dir, defaultDir) {
		return true
	}
	_, err := os.Lstat(filepath.Join(dir, CreatedMarker))
	return err == nil
}

// checkPaths refuses a data dir or log file install must not take (see
// SystemDirs, checkDataDirContent); it returns the data dir's manifest
// (nil if none) and the log file to record in it as the agent's ("" when
// the log is in the data dir, goes to stderr, or is already recorded).
// A log file outside the data dir that exists already is refused unless
// the manifest names it or its name is the agent's ("tposagent…", the
// log of a version before manifests): the agent would write into another
// program's file and rotate it.
func checkPaths(sys SystemDirs, dataDir, logFile string) (*Manifest, string, error) {
	if err := sys.checkDataDir(dataDir); err != nil {
		return nil, "", err
	}
	if err := checkDataDirContent(dataDir); err != nil {
		return nil, "", err
	}
	m, err := ReadManifest(dataDir)
	if err != nil {
		return nil, "", err
	}
	if logFile == "" || samePath(filepath.Dir(logFile), dataDir) {
		return m, "", nil
	}
	if err := sys.checkLogFile(logFile); err != nil {
		return nil, "", err
	}
	if m != nil && m.hasLog(logFile) {
		return m, "", nil
	}
	fi, err := os.Lstat(logFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, "", fmt.Errorf("log.file %s: %w", logFile, err)
	case !fi.Mode().IsRegular():
		return nil, "", fmt.Errorf("log.file %s exists and is not a regular file", logFile)
	case !strings.HasPrefix(strings.ToLower(filepath.Base(logFile)), "tposagent"):
		return nil, "", fmt.Errorf("log.file %s exists and tposagent did not create it: the agent would write into it and rotate it (rename it to .1, .2 …); name a new file, or leave log.file empty (the data dir)", logFile)
	}
	return m, logFile, nil
}

// WriteFileAtomic writes data to path readable only by its owner (0600; on
// Windows by Administrators and SYSTEM): a temp file in the same directory,
// fsync, rename, fsync of the directory. A crash leaves the old file or the
// new one, never half of one.
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.WriteSecured(path, data, 0o600, func(tmp string) error { return securePath(tmp, false) })
}
