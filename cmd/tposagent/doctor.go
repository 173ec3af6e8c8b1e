package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/i18n"
	"github.com/tposagent/tposagent/internal/textsafe"
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
	addLangFlag(fs, e)
	timeout := fs.Duration("timeout", 10*time.Second, "time limit of each network check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var fs2 []finding
	var secrets textsafe.Secrets // the config's, once it is read
	add := func(level, what, format string, a ...any) {
		// Findings quote servers' words: no terminal controls, no secret.
		fs2 = append(fs2, finding{level, what, secrets.Text(fmt.Sprintf(format, a...))})
	}
	l := e.language()
	defer func() { printFindings(e.stdout, fs2, l) }()

	cfg, err := config.Load(e.configPath)
	if err != nil {
		add("FAIL", "config", "%v", err)
		return withCode(exitError)
	}
	secrets = textsafe.NewSecrets(cfg.Secrets()...)
	add("ok", "config", l.T("%s is valid", "%s geçerli"), cfg.Path)
	for _, w := range cfg.Warnings() {
		add("warn", "config", "%s", l.Warning(w))
	}
	if st, err := os.Stat(cfg.Path); err == nil && st.Mode().Perm()&0o077 != 0 && !isWindows() {
		add("warn", "config", l.T("%s is readable by others (mode %v): chmod 600 it, it holds passwords", "%s başkalarınca okunabiliyor (izin %v): chmod 600 yapın, parolalar içeriyor"), cfg.Path, st.Mode().Perm())
	}

	// Data dir and disk space.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		add("FAIL", "data dir", l.T("cannot create %s: %v", "%s oluşturulamıyor: %v"), cfg.DataDir, err)
	} else if f, err := os.CreateTemp(cfg.DataDir, ".doctor*"); err != nil {
		add("FAIL", "data dir", l.T("%s is not writable: %v (run as the service user or fix ownership)", "%s yazılamıyor: %v (hizmet kullanıcısıyla çalıştırın veya sahipliği düzeltin)"), cfg.DataDir, err)
	} else {
		f.Close()
		os.Remove(f.Name())
		add("ok", "data dir", l.T("%s is writable", "%s yazılabilir"), cfg.DataDir)
	}
	if u, err := disk.UsageWithContext(ctx, cfg.DataDir); err == nil {
		free := humanBytes(u.Free)
		switch {
		case u.Free < uint64(cfg.Outbox.MaxSize):
			add("warn", "disk", l.T("%s free on %s, less than outbox.max_size %s: the queue could fill the disk", "%[2]s üzerinde %[1]s boş, outbox.max_size %[3]s değerinden az: kuyruk diski doldurabilir"), free, cfg.DataDir, cfg.Outbox.MaxSize)
		default:
			add("ok", "disk", l.T("%s free on %s", "%[2]s üzerinde %[1]s boş"), free, cfg.DataDir)
		}
	}

	// The running agent: without it nothing is registered or delivered.
	running := false
	var identity device.Identity // what the agent would register with
	c, err := apiClient(e)
	if err != nil {
		add("FAIL", "agent", l.T("not running or not reachable: %v (tposagent start; or tposagent run in the foreground)", "çalışmıyor veya ulaşılamıyor: %v (tposagent start; veya önde: tposagent run)"), err)
	} else {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := c.Status(cctx)
		cancel()
		switch {
		case errors.Is(err, localapi.ErrNotRunning):
			add("FAIL", "agent", "%s", l.T("not running (tposagent start; or tposagent run in the foreground)", "çalışmıyor (tposagent start; veya önde: tposagent run)"))
		case err != nil:
			add("FAIL", "agent", "%v", err)
		default:
			running = true
			identity = device.Identity{FiscalSerial: s.Device.FiscalSerial, ECRSerial: s.Device.ECRSerial}
			if e := s.Outbox.Enqueue; e.FailingSince != nil {
				add("FAIL", "outbox", l.T("records cannot be stored since %s (%d failed): %s", "kayıtlar %s zamanından beri saklanamıyor (%d başarısız): %s"), fmtTime(e.FailingSince), e.Failures, e.LastError)
			}
			for _, w := range s.Warnings {
				if strings.HasPrefix(w, agent.OutboxClosedWarning) {
					add("FAIL", "outbox", "%s", l.Warning(w))
				}
			}
			add("ok", "agent", l.T("running %s, licence %s, %d pending, %d dead", "çalışıyor %s, lisans: %s, %d bekliyor, %d reddedildi"), s.Version, l.State(string(s.License.State)), s.Outbox.Pending, s.Outbox.Dead)
			if s.Device.FiscalSerial != "" {
				add("ok", "device", l.T("%s from %s (%s)", "%s, kaynak: %s (%s)"), s.Device.FiscalSerial, s.Device.Source, s.Device.Port)
			}
			if s.Device.Error != "" {
				add("warn", "device", "%s", s.Device.Error)
			}
			if s.Outbox.Dead > 0 {
				add("warn", "outbox", l.T("%d record(s) refused by Ödüyo: see tposagent outbox dead", "Ödüyo %d kaydı reddetti: bakınız tposagent outbox dead"), s.Outbox.Dead)
			}
			if s.Outbox.FileGone != "" {
				add("FAIL", "outbox", "%s", s.Outbox.FileGone)
			}
			if s.Outbox.Undecided > 0 {
				add("warn", "outbox", l.T("%d record(s) wait for a lookup that cannot decide whether an earlier attempt delivered them: %s; tposagent outbox retry --force ID sends one without looking",
					"%d kayıt, önceki denemenin ulaşıp ulaşmadığını belirleyemeyen bir sorgu için bekliyor: %s; tposagent outbox retry --force ID bir kaydı sorgulamadan gönderir"), s.Outbox.Undecided, s.Outbox.UndecidedReason)
			}
			if p := s.Outbox.PausedUntil; p != nil && p.After(time.Now()) {
				add("warn", "outbox", l.T("sending paused by the server (Retry-After) until %s; tposagent outbox retry ID sends a record now", "sunucu gönderimi %s tarihine kadar durdurdu (Retry-After); tposagent outbox retry ID bir kaydı hemen gönderir"), fmtTime(p))
			}
		}
	}

	// The device, when the agent is not there to tell.
	if !running {
		switch strings.ToLower(cfg.Device.Port) {
		case "none":
			identity = device.Identity{FiscalSerial: cfg.Device.FiscalSerial}
			if cfg.Device.FiscalSerial != "" {
				add("ok", "device", l.T("port none: fiscal serial %s from config", "port none: mali seri no %s yapılandırmadan"), cfg.Device.FiscalSerial)
			} else {
				add("warn", "device", "%s", l.T("port none and no device.fiscal_serial: the till registers once the POS reports the identity (PUT /v1/device, or tposagent device set)",
					"port none ve device.fiscal_serial yok: kasa, POS kimliği bildirince kaydolur (PUT /v1/device veya tposagent device set)"))
			}
		default:
			r, err := device.NewReader(device.Config{Port: cfg.Device.Port, Protocol: cfg.Device.Protocol, Baud: cfg.Device.Baud,
				AckTimeout: cfg.Device.AckTimeout.Duration, Tries: cfg.Device.Tries, ProbeBudget: cfg.Device.ProbeBudget.Duration,
				HoldMax: cfg.Device.HoldMax.Duration, ReopenGap: cfg.Device.ReopenGap.Duration, Scan: cfg.Device.Scan,
				Exclude: cfg.Device.Exclude, CacheDir: cfg.DataDir})
			if err != nil {
				add("FAIL", "device", "%v", err)
				break
			}
			known := cfg.Device.FiscalSerial
			cached := r.Cached()
			if known == "" {
				known, _ = agent.KnownFiscalSerial(cfg.DataDir) // the POS's report, then the cache
			}
			rep, _ := agent.POSReport(cfg.DataDir)
			if rep.FiscalSerial != "" {
				age := time.Since(rep.ReadAt).Round(time.Minute)
				state := "ok"
				if age >= cfg.Device.POSReportMaxAge.Duration {
					state = "warn" // the agent reads the device itself again
				}
				add(state, "device", l.T("the POS reported %s on port %s %s ago (the agent leaves the device alone while the report is younger than %s)",
					"POS %s bildirdi, port %s, %s önce (bildirim %s yaşından gençken ajan cihaza dokunmaz)"), rep.FiscalSerial, dash(rep.Port), age, cfg.Device.POSReportMaxAge)
			}
			// A person asked: the device is read even with a fresh report.
			id, err := r.ReadVia(ctx, known, rep.Port)
			identity = id
			if err != nil {
				identity = cached
			}
			switch {
			case err == nil:
				add("ok", "device", l.T("%s on %s (%s)", "%s, port %s (%s)"), id.FiscalSerial, id.Port, id.Protocol)
			case cfg.Device.FiscalSerial != "":
				add("warn", "device", l.T("%v; the agent would use %s from config", "%v; ajan yapılandırmadaki %s değerini kullanırdı"), err, cfg.Device.FiscalSerial)
			case cached.FiscalSerial != "":
				add("warn", "device", l.T("%v; the agent would use %s from the cache (or the POS's report)", "%v; ajan önbellekteki %s değerini (veya POS bildirimini) kullanırdı"), err, cached.FiscalSerial)
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
		checkRegistration(ctx, l, add, cfg, tc, identity, *timeout)
	}
	checkOduyo(ctx, l, add, cfg, quiet, *timeout)

	for _, f := range fs2 {
		if f.level == "FAIL" {
			return withCode(exitError)
		}
	}
	return nil
}

// checkOduyo reaches the Ödüyo server, logs in and asks what the outbox's
// probe asks. No base_url is allowed (records are kept, not sent): a warning.
func checkOduyo(ctx context.Context, l i18n.Lang, add func(string, string, string, ...any), cfg *config.Config, quiet *slog.Logger, timeout time.Duration) {
	if cfg.Oduyo.BaseURL == "" {
		add("warn", "oduyo", "%s", l.T("not checked: oduyo.base_url is not set (records are kept, not sent)",
			"denetlenmedi: oduyo.base_url ayarlı değil (kayıtlar saklanıyor, gönderilmiyor)"))
		return
	}
	hc, err := agent.HTTPClient(cfg.Oduyo.CAFile, quiet)
	if err != nil {
		add("FAIL", "oduyo", "oduyo.ca_file: %v", err)
		return
	}
	checkServer(ctx, l, add, hc, "oduyo", cfg.Oduyo.BaseURL, timeout)
	oc, err := oduyo.New(oduyo.Config{BaseURL: cfg.Oduyo.BaseURL, APIKey: cfg.Oduyo.APIKey.Reveal(),
		Username: cfg.Oduyo.Username, Password: cfg.Oduyo.Password.Reveal(), Timeout: timeout, HTTPClient: hc})
	if err == nil {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		err = oc.Login(lctx)
		cancel()
	}
	if err != nil {
		hint := l.T("check oduyo.username, oduyo.password and oduyo.api_key", "oduyo.username, oduyo.password ve oduyo.api_key değerlerini kontrol edin")
		if c, _ := oduyo.Classify(err); c == oduyo.Transient {
			hint = l.T("the server did not answer as Ödüyo: check base_url, a proxy or a captive portal",
				"sunucu Ödüyo olarak yanıt vermedi: base_url, vekil sunucu (proxy) veya giriş portalını kontrol edin")
		}
		add("FAIL", "oduyo login", "%v (%s)", err, hint)
	} else {
		add("ok", "oduyo login", "%s", l.T("credentials accepted", "kimlik bilgileri kabul edildi"))
		// What the outbox's probe asks: does the API answer as Ödüyo?
		pctx, cancel := context.WithTimeout(ctx, timeout)
		if err := oc.Probe(pctx); err != nil {
			add("FAIL", "oduyo api", l.T("%v (records wait until Ödüyo answers)", "%v (kayıtlar Ödüyo yanıt verene kadar bekler)"), err)
		} else {
			add("ok", "oduyo api", "%s", l.T("answers as Ödüyo", "Ödüyo olarak yanıt veriyor"))
		}
		cancel()
	}
}

// checkRegistration registers the till with TPOSL as the agent does — a
// POST with the configured identity — and decodes the answer: a server
// that answers a GET but refuses the registration is a failure.
func checkRegistration(ctx context.Context, l i18n.Lang, add func(string, string, string, ...any), cfg *config.Config, hc *http.Client, id device.Identity, timeout time.Duration) {
	if cfg.TPOSL.URL == "" {
		add("warn", "tposl", "%s", l.T("tposl.url is not set: the till is not registered", "tposl.url ayarlı değil: kasa kaydolmuyor"))
		return
	}
	if cfg.Device.FiscalSerial != "" {
		id.FiscalSerial = cfg.Device.FiscalSerial // the override, as the agent registers
	}
	if id.FiscalSerial == "" {
		add("FAIL", "tposl", "%s", l.T("no fiscal serial known, so the till cannot be registered: connect the ÖKC (device.port), set device.fiscal_serial, or let the POS report it (tposagent device set)",
			"mali seri no bilinmiyor, kasa kaydolamaz: ÖKC'yi bağlayın (device.port), device.fiscal_serial ayarlayın veya POS bildirsin (tposagent device set)"))
		return
	}
	quiet := slog.New(slog.DiscardHandler)
	client, err := tposl.New(tposl.Config{URL: cfg.TPOSL.URL, HTTPClient: hc, Timeout: timeout, Logger: quiet})
	if err != nil {
		add("FAIL", "tposl", "%v", err)
		return
	}
	params, err := agent.RegistrationParams(ctx, cfg, id, time.Now(), quiet)
	if err != nil {
		add("FAIL", "tposl", l.T("%v (fix the [store] section)", "%v ([store] bölümünü düzeltin)"), err)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ret, err := client.Register(rctx, params)
	if err != nil {
		add("FAIL", "tposl", l.T("registration failed: %v (check the network, proxy, firewall, tposl.url, tposl.username and tposl.password)",
			"kayıt başarısız: %v (ağı, vekil sunucuyu, güvenlik duvarını, tposl.url, tposl.username ve tposl.password değerlerini denetleyin)"), err)
		return
	}
	lic := tposl.Evaluate(ret, id.FiscalSerial, time.Now())
	switch lic.State {
	case tposl.Unregistered:
		add("FAIL", "tposl", l.T("the licence server refused the registration of %s: %s", "lisans sunucusu %s kaydını reddetti: %s"), id.FiscalSerial, licenseLine(lic))
	case tposl.Licensed, tposl.Demo:
		add("ok", "tposl", l.T("registered %s: %s", "%s kaydedildi: %s"), id.FiscalSerial, licenseLine(lic))
	default:
		add("warn", "tposl", l.T("registered %s, but: %s", "%s kaydedildi, ancak: %s"), id.FiscalSerial, licenseLine(lic))
	}
}

// checkServer sends a GET: any HTTP answer proves DNS, routing and TLS; the
// Date header tells the clock skew.
func checkServer(ctx context.Context, l i18n.Lang, add func(string, string, string, ...any), hc *http.Client, name, url string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		add("FAIL", name, l.T("bad URL: %v", "hatalı adres: %v"), err)
		return
	}
	// A redirect is not followed: a captive portal or a proxy's login page
	// answers with one, and following it would show the portal as the
	// server answering.
	nr := *hc
	nr.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := nr.Do(req)
	if err != nil {
		add("FAIL", name, l.T("cannot reach %s: %v (check the network, proxy, firewall and the URL)", "%s erişilemiyor: %v (ağı, vekil sunucuyu, güvenlik duvarını ve adresi kontrol edin)"), req.URL.Host, errors.Unwrap(err))
		return
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc := resp.Header.Get("Location")
		if u, err := resp.Location(); err == nil {
			loc = u.String()
		}
		add("FAIL", name, l.T("%s redirects to %s (not the server), HTTP %d: a captive portal or a proxy's login page?", "%s %s adresine yönlendiriyor (sunucu değil), HTTP %d: bir giriş portalı veya vekil sunucu girişi mi?"), req.URL.Host, loc, resp.StatusCode)
		return
	}
	add("ok", name, l.T("%s answers (HTTP %d)", "%s cevap veriyor (HTTP %d)"), req.URL.Host, resp.StatusCode)
	if d, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
		skew := time.Since(d).Round(time.Second)
		if skew < -2*time.Minute || skew > 2*time.Minute {
			add("warn", "clock", l.T("the till clock differs from %s by %s: fix the time (KASA_TARIH_SAAT and licence dates depend on it)", "kasa saati %s ile %s farklı: saati düzeltin (KASA_TARIH_SAAT ve lisans tarihleri buna bağlı)"), req.URL.Host, skew)
		} else {
			add("ok", "clock", l.T("within %s of %s", "%[2]s ile fark %[1]s içinde"), skew.Abs(), req.URL.Host)
		}
	}
}

func isWindows() bool { return filepath.Separator == '\\' }

// printFindings writes doctor's table; in Turkish the level and the check
// are named in Turkish too.
func printFindings(w io.Writer, fs []finding, l i18n.Lang) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range fs {
		level, what := f.level, f.what
		if l == i18n.TR {
			level = map[string]string{"ok": "tamam", "warn": "uyarı", "FAIL": "HATA"}[f.level]
			if tr, ok := doctorChecksTR[f.what]; ok {
				what = tr
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", level, what, f.msg)
	}
	tw.Flush()
}

var doctorChecksTR = map[string]string{
	"config": "yapılandırma", "data dir": "veri dizini", "disk": "disk", "agent": "ajan", "device": "cihaz",
	"outbox": "kuyruk", "clock": "saat", "oduyo login": "oduyo girişi",
}
