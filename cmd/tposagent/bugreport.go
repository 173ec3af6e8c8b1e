package main

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/host"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/textsafe"
	"github.com/tposagent/tposagent/outbox"
)

// bugreport gathers what a support person asks for first into one zip.
// It works with the agent running (it asks the local API) or stopped (it
// reads the data dir's files, the outbox read-only). Every configured
// secret is replaced in every file of the zip, whatever the file, and the
// config is written from the parsed values (secrets "[redacted]").

const redacted = "[redacted]"

func cmdBugreport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bugreport", "bugreport [-o FILE] [--lines N] [--trace FILE]",
		"  tposagent bugreport                          # tposagent-bugreport-<host>-<time>.zip here\n"+
			"  tposagent bugreport -o C:\\Temp\\kasa3.zip\n")
	addConfigFlag(fs, e)
	out := fs.String("o", "", "the zip to write (default: tposagent-bugreport-<host>-<time>.zip in the current directory)")
	lines := fs.Int("lines", 1000, "log lines to include (the last ones)")
	trace := fs.String("trace", "", "a device trace to include (default: the agent's trace of its last device read, else the newest *.trace in the data dir)")
	timeout := fs.Duration("timeout", 5*time.Second, "time limit of each network check of doctor")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *lines < 0 {
		return usageErrorf("bugreport: --lines must be 0 or more")
	}
	now := time.Now()
	hostname, _ := os.Hostname()
	if *out == "" {
		*out = fmt.Sprintf("tposagent-bugreport-%s-%s.zip", safeName(hostname), now.Format("20060102-150405"))
	}

	b := &bundle{}
	cfg, cfgErr := config.Read(e.configPath)
	if cfg != nil {
		b.secrets = configSecrets(cfg)
	}

	// The config: from the parsed values (secrets redacted by their type);
	// if it does not parse, the file with secret-looking values blanked.
	switch {
	case cfgErr == nil:
		data, err := toml.Marshal(cfg)
		if err != nil {
			b.note("config.toml", "cannot encode the config: %v", err)
		} else {
			b.add("config.toml", append([]byte("# "+cfg.Path+" (secrets replaced)\n"), data...))
		}
		if err := cfg.Validate(); err != nil {
			b.note("config-errors.txt", "%v", err)
		}
	default:
		b.note("config-errors.txt", "%v", cfgErr)
		path := e.configPath
		if path == "" {
			path = config.DefaultPath()
		}
		if raw, err := config.ReadFile(path); err == nil { // not a FIFO, not a device
			b.add("config.toml", blankSecretLines(raw))
		}
	}

	b.add("version.txt", fmt.Appendf(nil, "tposagent %s (commit %s, built %s, %s %s/%s)\n",
		agent.Version, agent.Commit, agent.BuildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH))
	b.add("os.txt", osFacts(ctx, hostname, cfg, now))

	running := false
	if cfg != nil {
		running = b.fromAgent(ctx, e, cfg)
		if !running {
			b.fromFiles(cfg)
		}
		b.logTail(cfg, *lines)
		b.dataDirListing(cfg)
		b.deviceTrace(cfg, *trace)
	}

	// doctor, as the support person would run it (English).
	var doc bytes.Buffer
	de := &env{stdin: strings.NewReader(""), stdout: &doc, stderr: &doc, configPath: e.configPath, lang: "en", lookupEnv: e.lookupEnv}
	derr := cmdDoctor(ctx, de, []string{"--timeout", timeout.String()})
	if derr != nil {
		var ee *exitErr
		if !errors.As(derr, &ee) || ee.err != nil {
			fmt.Fprintf(&doc, "doctor: %v\n", derr)
		}
	}
	b.add("doctor.txt", doc.Bytes())

	mode := "the agent was not running: status from the data dir's files"
	if running {
		mode = "the agent was running: status from its local API"
	}
	readme := fmt.Sprintf("tposagent bug report\ncreated %s on %s\n%s\n\nfiles:\n", now.Format(time.RFC3339), hostname, mode)
	for _, f := range b.files {
		readme += fmt.Sprintf("  %-22s %d bytes\n", f.name, len(f.data))
	}
	readme += "\nEvery configured secret (passwords, API key, API token) is replaced by " + redacted + " in every file.\n"
	b.files = append([]bundleFile{{"README.txt", []byte(readme)}}, b.files...)

	if err := b.write(*out, now); err != nil {
		return err
	}
	abs, _ := filepath.Abs(*out)
	fmt.Fprintf(e.stdout, "wrote %s (%d files; %s)\n", abs, len(b.files), mode)
	return nil
}

type bundleFile struct {
	name string
	data []byte
}

type bundle struct {
	files   []bundleFile
	secrets []string
}

func (b *bundle) add(name string, data []byte) {
	b.files = append(b.files, bundleFile{name, data})
}

func (b *bundle) note(name, format string, a ...any) {
	msg := fmt.Sprintf(format, a...) + "\n"
	for i := range b.files {
		if b.files[i].name == name {
			b.files[i].data = append(b.files[i].data, msg...)
			return
		}
	}
	b.add(name, []byte(msg))
}

func (b *bundle) addJSON(name string, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		b.note(name+".error.txt", "%v", err)
		return
	}
	b.add(name, append(data, '\n'))
}

// fromAgent asks the running agent; false when none answers.
func (b *bundle) fromAgent(ctx context.Context, e *env, cfg *config.Config) bool {
	c, err := apiClient(&env{configPath: cfg.Path, lookupEnv: e.lookupEnv})
	if err != nil {
		b.note("agent.txt", "no local API client: %v", err)
		return false
	}
	c.HTTP = &http.Client{Timeout: 5 * time.Second}
	var status json.RawMessage
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &status); err != nil {
		b.note("agent.txt", "status: %v", err)
		return false
	}
	b.add("status.json", indent(status))
	for _, x := range []struct{ path, name string }{{"/v1/license", "license.json"}, {"/v1/device", "device.json"}} {
		var v json.RawMessage
		if err := c.Do(ctx, http.MethodGet, x.path, nil, &v); err != nil {
			b.note("agent.txt", "%s: %v", x.path, err)
			continue
		}
		b.add(x.name, indent(v))
	}
	if !b.has("device.json") { // an agent without GET /v1/device
		var s struct {
			Device json.RawMessage `json:"device"`
		}
		if json.Unmarshal(status, &s) == nil && s.Device != nil {
			b.add("device.json", indent(s.Device))
		}
	}
	var s localapi.Status
	if json.Unmarshal(status, &s) == nil {
		b.addJSON("outbox-stats.json", s.Outbox)
	}
	dead, err := c.List(ctx, "dead", 1000)
	if err != nil {
		b.note("agent.txt", "dead letters: %v", err)
	} else {
		b.addJSON("outbox-dead.json", deadReasons(dead))
	}
	return true
}

func (b *bundle) has(name string) bool {
	for _, f := range b.files {
		if f.name == name {
			return true
		}
	}
	return false
}

// deadReason is a dead letter without its payload.
type deadReason struct {
	ID       uint64     `json:"id"`
	Kind     string     `json:"kind"`
	Key      string     `json:"key"`
	Created  time.Time  `json:"created"`
	Attempts int        `json:"attempts"`
	Reason   string     `json:"dead_reason"`
	DeadAt   *time.Time `json:"dead_at,omitempty"`
}

func deadReasons(items []localapi.ItemView) []deadReason {
	out := make([]deadReason, 0, len(items))
	for _, it := range items {
		out = append(out, deadReason{ID: it.ID, Kind: string(it.Kind), Key: it.Key, Created: it.Created, Attempts: it.Attempts, Reason: it.DeadReason, DeadAt: it.DeadAt})
	}
	return out
}

// fromFiles reads what a stopped agent left in its data dir, and writes
// a status.json of what can be known without it.
func (b *bundle) fromFiles(cfg *config.Config) {
	status := map[string]any{
		"running":  false,
		"note":     "the agent was not running when this report was made: this status is read from its files",
		"version":  agent.Version,
		"warnings": cfg.Warnings(),
	}
	defer func() { b.addJSON("status.json", status) }()
	// The licence as the agent would state it from its cache (the cached
	// answer itself goes beside it).
	cache := tposl.Cache{Path: filepath.Join(cfg.DataDir, "license.json")}
	if rec, err := cache.Load(); err != nil {
		b.note("agent.txt", "licence cache: %v", err)
	} else {
		lic := tposl.Effective(rec, rec.FiscalSerial, time.Now(), cfg.TPOSL.Grace.Duration)
		status["license"] = lic
		b.addJSON("license.json", lic)
		b.addJSON("license-cache.json", rec)
	}
	if known, from := agent.KnownFiscalSerial(cfg.DataDir); known != "" {
		status["fiscal_serial"], status["fiscal_serial_from"] = known, from
	}
	if rep, err := agent.POSReport(cfg.DataDir); err == nil {
		status["pos_report"] = map[string]any{
			"fiscal_serial": rep.FiscalSerial, "port": rep.Port, "at": rep.ReadAt,
			"age_s": int64(time.Since(rep.ReadAt) / time.Second),
			"fresh": time.Since(rep.ReadAt) < cfg.Device.POSReportMaxAge.Duration,
		}
	}
	if data, err := os.ReadFile(filepath.Join(cfg.DataDir, device.CacheFile)); err != nil {
		b.note("agent.txt", "%s: %v", device.CacheFile, err)
	} else {
		b.add("device.json", data)
	}
	st, dead, err := outbox.Inspect(filepath.Join(cfg.DataDir, "outbox.db"), 1000)
	if err != nil {
		b.note("agent.txt", "%v", err)
		return
	}
	stats := map[string]any{
		"pending": st.Pending, "dead": st.Dead, "oldest_pending_age_s": int64(st.OldestPendingAge / time.Second), "bytes": st.Bytes,
		"enqueued_total": st.Enqueued, "delivered_total": st.Delivered, "coalesced_total": st.Coalesced, "dead_lettered_total": st.DeadLettered,
	}
	status["outbox"] = stats
	b.addJSON("outbox-stats.json", stats)
	views := make([]localapi.ItemView, 0, len(dead))
	for _, it := range dead {
		views = append(views, localapi.ItemView{ID: it.ID, Kind: localapi.Kind(it.Kind), Key: it.Key, Created: it.Created,
			Attempts: it.Attempts, DeadReason: it.DeadReason, DeadAt: timePtr(it.DeadAt)})
	}
	b.addJSON("outbox-dead.json", deadReasons(views))
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// logTail adds the last n lines of the agent's log file.
func (b *bundle) logTail(cfg *config.Config, n int) {
	path := cfg.LogFile()
	if path == "" || n == 0 {
		b.note("log-tail.txt", "file logging is off (log.file = \"-\")")
		return
	}
	data, err := tailLines(path, n, 8<<20)
	if err != nil {
		b.note("log-tail.txt", "%v", err)
		return
	}
	b.add("log-tail.txt", data)
}

// tailLines returns the last n lines of a file, reading at most max bytes
// from its end (limit).
func tailLines(path string, n int, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	off := max(fi.Size()-limit, 0)
	data, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, fmt.Errorf("read log: %w", err)
	}
	if off > 0 { // drop the partial first line
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	data = bytes.TrimRight(data, "\n")
	cut := len(data)
	for i := 0; i < n && cut > 0; i++ {
		j := bytes.LastIndexByte(data[:cut], '\n')
		if j < 0 {
			cut = 0
			break
		}
		cut = j
	}
	if cut > 0 {
		cut++ // after the newline
	}
	return append(data[cut:], '\n'), nil
}

// dataDirListing names the files of the data dir (not their contents).
func (b *bundle) dataDirListing(cfg *config.Config) {
	entries, err := os.ReadDir(cfg.DataDir)
	if err != nil {
		b.note("data-dir.txt", "%v", err)
		return
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\n", cfg.DataDir)
	for _, en := range entries {
		if fi, err := en.Info(); err == nil {
			fmt.Fprintf(&sb, "%s %12d  %s  %s\n", fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339), en.Name())
		}
	}
	b.add("data-dir.txt", []byte(sb.String()))
}

// deviceTrace adds the given trace, else the agent's trace of its last
// device read, else the newest *.trace of the data dir.
func (b *bundle) deviceTrace(cfg *config.Config, path string) {
	if last := filepath.Join(cfg.DataDir, agent.DeviceTraceFile); path == "" && modTime(last) != (time.Time{}) {
		path = last
	}
	if path == "" {
		matches, _ := filepath.Glob(filepath.Join(cfg.DataDir, "*.trace"))
		sort.Slice(matches, func(i, j int) bool { return modTime(matches[i]).After(modTime(matches[j])) })
		if len(matches) == 0 {
			return
		}
		path = matches[0]
	}
	data, err := tailLines(path, 20000, 4<<20)
	if err != nil {
		b.note("device-trace.txt", "%v", err)
		return
	}
	b.add("device-trace.txt", append([]byte("# "+path+"\n"), data...))
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func osFacts(ctx context.Context, hostname string, cfg *config.Config, now time.Time) []byte {
	var sb strings.Builder
	zone, offset := now.Zone()
	fmt.Fprintf(&sb, "hostname: %s\nos/arch: %s/%s, %d CPUs\ngo: %s\ntime: %s (zone %s, UTC%+03d:%02d)\n",
		hostname, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), now.Format(time.RFC3339), zone, offset/3600, (offset%3600)/60)
	if hi, err := host.InfoWithContext(ctx); err == nil {
		fmt.Fprintf(&sb, "platform: %s %s (%s), kernel %s %s\nvirtualization: %s %s\nbooted: %s (up %s)\n",
			hi.Platform, hi.PlatformVersion, hi.PlatformFamily, hi.KernelVersion, hi.KernelArch,
			hi.VirtualizationSystem, hi.VirtualizationRole, time.Unix(int64(hi.BootTime), 0).Format(time.RFC3339), time.Duration(hi.Uptime)*time.Second)
	}
	for _, k := range []string{"LANG", "LC_ALL", "TZ"} {
		if v := os.Getenv(k); v != "" {
			fmt.Fprintf(&sb, "%s=%s\n", k, v)
		}
	}
	if cfg != nil {
		if u, err := disk.UsageWithContext(ctx, cfg.DataDir); err == nil {
			fmt.Fprintf(&sb, "data dir %s: %s free of %s (%s)\n", cfg.DataDir, humanBytes(u.Free), humanBytes(u.Total), u.Fstype)
		}
	}
	return []byte(sb.String())
}

// configSecrets are the values that must appear nowhere in the zip.
func configSecrets(cfg *config.Config) []string {
	var out []string
	for _, s := range []config.Secret{cfg.TPOSL.Password, cfg.Oduyo.Password, cfg.Oduyo.APIKey, cfg.API.Token} {
		if v := s.Reveal(); v != "" {
			out = append(out, v)
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// secretLine matches a TOML line whose key names a secret.
var secretLine = regexp.MustCompile(`(?im)^(\s*(?:password|api_key|token)\s*=\s*).*$`)

// blankSecretLines redacts the values of secret keys in a config file
// that does not parse (its values are unknown to configSecrets).
func blankSecretLines(raw []byte) []byte {
	return secretLine.ReplaceAll(raw, []byte(`${1}"`+redacted+`"`))
}

func indent(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return raw
	}
	return append(b.Bytes(), '\n')
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// write stores the bundle as a zip, every file passed through the
// redactor, atomically (temp file, then rename) and owner-only.
func (b *bundle) write(path string, now time.Time) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".bugreport-*.zip")
	if err != nil {
		return fmt.Errorf("bugreport: %w", err)
	}
	defer os.Remove(tmp.Name())
	zw := zip.NewWriter(tmp)
	for _, f := range b.files {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: now})
		if err != nil {
			tmp.Close()
			return fmt.Errorf("bugreport: %w", err)
		}
		if _, err := w.Write(b.redact(f.data)); err != nil {
			tmp.Close()
			return fmt.Errorf("bugreport: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return fmt.Errorf("bugreport: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return fmt.Errorf("bugreport: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("bugreport: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("bugreport: %w", err)
	}
	return nil
}

func (b *bundle) redact(data []byte) []byte {
	if len(b.secrets) == 0 {
		return data
	}
	for _, s := range b.secrets { // short ones too (textsafe skips them)
		data = bytes.ReplaceAll(data, []byte(s), []byte(redacted))
	}
	// Each secret as it is and in the forms it takes inside JSON ("a&b" is
	// "a\u0026b") or a URL: a server's text quoting it reaches
	// outbox-dead.json JSON-encoded.
	return []byte(textsafe.NewSecrets(b.secrets...).Replace(string(data)))
}
