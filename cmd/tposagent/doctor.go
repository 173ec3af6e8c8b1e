package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shirou/gopsutil/v4/disk"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/internal/config"
)

// A finding of doctor: ok, warn or FAIL, with what to do about it.
type finding struct {
	level string // "ok", "warn", "FAIL"
	what  string
	msg   string
}

func cmdDoctor(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "doctor", "doctor [--config FILE] [--timeout D]",
		"  tposagent doctor                      # run every check, say what to fix\n")
	addConfigFlag(fs, e)
	timeout := fs.Duration("timeout", 10*time.Second, "time limit of each network check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var fs2 []finding
	add := func(level, what, format string, a ...any) {
		fs2 = append(fs2, finding{level, what, fmt.Sprintf(format, a...)})
	}
	defer func() {
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		for _, f := range fs2 {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.level, f.what, f.msg)
		}
		tw.Flush()
	}()

	cfg, err := config.Load(e.configPath)
	if err != nil {
		add("FAIL", "config", "%v", err)
		return withCode(exitError)
	}
	add("ok", "config", "%s is valid", cfg.Path)
	for _, w := range cfg.Warnings() {
		add("warn", "config", "%s", w)
	}
	if st, err := os.Stat(cfg.Path); err == nil && st.Mode().Perm()&0o077 != 0 && !isWindows() {
		add("warn", "config", "%s is readable by others (mode %v): chmod 600 it, it holds passwords", cfg.Path, st.Mode().Perm())
	}

	// Data dir and disk space.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		add("FAIL", "data dir", "cannot create %s: %v", cfg.DataDir, err)
	} else if f, err := os.CreateTemp(cfg.DataDir, ".doctor*"); err != nil {
		add("FAIL", "data dir", "%s is not writable: %v (run as the service user or fix ownership)", cfg.DataDir, err)
	} else {
		f.Close()
		os.Remove(f.Name())
		add("ok", "data dir", "%s is writable", cfg.DataDir)
	}
	if u, err := disk.UsageWithContext(ctx, cfg.DataDir); err == nil {
		free := humanBytes(u.Free)
		switch {
		case u.Free < uint64(cfg.Outbox.MaxSize):
			add("warn", "disk", "%s free on %s, less than outbox.max_size %s: the queue could fill the disk", free, cfg.DataDir, cfg.Outbox.MaxSize)
		default:
			add("ok", "disk", "%s free on %s", free, cfg.DataDir)
		}
	}

	// The running agent.
	running := false
	c, err := apiClient(e)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := c.Status(cctx)
		cancel()
		switch {
		case errors.Is(err, localapi.ErrNotRunning):
			add("warn", "agent", "not running (tposagent start; or tposagent run in the foreground)")
		case err != nil:
			add("FAIL", "agent", "%v", err)
		default:
			running = true
			add("ok", "agent", "running %s, licence %s, %d pending, %d dead", s.Version, s.License.State, s.Outbox.Pending, s.Outbox.Dead)
			if s.Device.FiscalSerial != "" {
				add("ok", "device", "%s from %s (%s)", s.Device.FiscalSerial, s.Device.Source, s.Device.Port)
			}
			if s.Device.Error != "" {
				add("warn", "device", "%s", s.Device.Error)
			}
			if s.Outbox.Dead > 0 {
				add("warn", "outbox", "%d record(s) refused by Ödüyo: see tposagent outbox dead", s.Outbox.Dead)
			}
			if s.Outbox.FileGone != "" {
				add("FAIL", "outbox", "%s", s.Outbox.FileGone)
			}
			if p := s.Outbox.PausedUntil; p != nil && p.After(time.Now()) {
				add("warn", "outbox", "sending paused by the server (Retry-After) until %s; tposagent outbox retry ID sends a record now", fmtTime(p))
			}
		}
	}

	// The device, when the agent is not there to tell.
	if !running {
		switch strings.ToLower(cfg.Device.Port) {
		case "none":
			if cfg.Device.FiscalSerial != "" {
				add("ok", "device", "port none: fiscal serial %s from config", cfg.Device.FiscalSerial)
			} else {
				add("warn", "device", "port none and no device.fiscal_serial: the till registers once the POS reports the identity (PUT /v1/device, or tposagent device set)")
			}
		default:
			r, err := device.NewReader(device.Config{Port: cfg.Device.Port, Protocol: cfg.Device.Protocol, Baud: cfg.Device.Baud,
				AckTimeout: cfg.Device.AckTimeout.Duration, Tries: cfg.Device.Tries, ProbeBudget: cfg.Device.ProbeBudget.Duration,
				Exclude: cfg.Device.Exclude, CacheDir: cfg.DataDir})
			if err != nil {
				add("FAIL", "device", "%v", err)
				break
			}
			known := cfg.Device.FiscalSerial
			cached := r.Cached()
			if known == "" {
				known = cached.FiscalSerial
			}
			id, err := r.Read(ctx, known)
			switch {
			case err == nil:
				add("ok", "device", "%s on %s (%s)", id.FiscalSerial, id.Port, id.Protocol)
			case cfg.Device.FiscalSerial != "":
				add("warn", "device", "%v; the agent would use %s from config", err, cfg.Device.FiscalSerial)
			case cached.FiscalSerial != "":
				add("warn", "device", "%v; the agent would use %s from the cache (or the POS's report)", err, cached.FiscalSerial)
			default:
				add("FAIL", "device", "%v", err)
			}
		}
	}

	// The servers: reachable, certificates valid, clock in step.
	quiet := slog.New(slog.DiscardHandler)
	tc, err := agent.HTTPClient(cfg.TPOSL.CAFile, quiet)
	if err != nil {
		add("FAIL", "tposl", "tposl.ca_file: %v", err)
	} else {
		checkServer(ctx, add, tc, "tposl", cfg.TPOSL.URL, *timeout)
	}
	hc, err := agent.HTTPClient(cfg.Oduyo.CAFile, quiet)
	if err != nil {
		add("FAIL", "oduyo", "oduyo.ca_file: %v", err)
		return withCode(exitError)
	}
	checkServer(ctx, add, hc, "oduyo", cfg.Oduyo.BaseURL, *timeout)
	oc, err := oduyo.New(oduyo.Config{BaseURL: cfg.Oduyo.BaseURL, APIKey: cfg.Oduyo.APIKey.Reveal(),
		Username: cfg.Oduyo.Username, Password: cfg.Oduyo.Password.Reveal(), Timeout: *timeout, HTTPClient: hc})
	if err == nil {
		lctx, cancel := context.WithTimeout(ctx, *timeout)
		err = oc.Login(lctx)
		cancel()
	}
	if err != nil {
		add("FAIL", "oduyo login", "%v (check oduyo.username, oduyo.password and oduyo.api_key)", err)
	} else {
		add("ok", "oduyo login", "credentials accepted")
	}

	for _, f := range fs2 {
		if f.level == "FAIL" {
			return withCode(exitError)
		}
	}
	return nil
}

// checkServer sends a GET: any HTTP answer proves DNS, routing and TLS; the
// Date header tells the clock skew.
func checkServer(ctx context.Context, add func(string, string, string, ...any), hc *http.Client, name, url string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		add("FAIL", name, "bad URL: %v", err)
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		add("FAIL", name, "cannot reach %s: %v (check the network, proxy, firewall and the URL)", req.URL.Host, errors.Unwrap(err))
		return
	}
	resp.Body.Close()
	add("ok", name, "%s answers (HTTP %d)", req.URL.Host, resp.StatusCode)
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		skew := time.Since(d).Round(time.Second)
		if skew < -2*time.Minute || skew > 2*time.Minute {
			add("warn", "clock", "the till clock differs from %s by %s: fix the time (KASA_TARIH_SAAT and licence dates depend on it)", req.URL.Host, skew)
		} else {
			add("ok", "clock", "within %s of %s", skew.Abs(), req.URL.Host)
		}
	}
}

func isWindows() bool { return filepath.Separator == '\\' }
