package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/internal/atomicfile"
	"github.com/tposagent/tposagent/internal/config"
)

// RegisterGap is the shortest time between two registrations that a
// change of identity asks for: a POS that reports a new identity many
// times a second (or a flapping device) gets one registration a minute,
// with the latest identity, not one per change.
const RegisterGap = time.Minute

// registrationLoop reads the device (unless the POS's report is fresh),
// registers with TPOSL at once, then every tposl.interval; again when the
// identity changes, at most once per RegisterGap (the latest wins). A
// failed registration is retried on a capped, jittered backoff instead of
// waiting a whole interval.
func (a *Agent) registrationLoop(ctx context.Context) {
	const (
		retryBase = 15 * time.Second
		retryCap  = 30 * time.Minute
	)
	interval := a.cfg.TPOSL.Interval.Duration
	failures := 0
	clk := a.opts.Clock
	recheck := clk.NewTimer(a.opts.DeviceRecheck)
	defer func() { recheck.Stop() }()

	a.readDevice(ctx)
	for {
		wait := interval
		// This registration uses the identity as it is now: a kick from
		// before it (the first read at start names the serial for the
		// first time) must not make a second one right after it. A kick
		// during it stays and registers again.
		select {
		case <-a.serialSeen:
		default:
		}
		if err := a.register(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			backoff := min(retryCap, retryBase<<min(failures-1, 10), interval)
			wait = backoff/2 + rand.N(backoff/2+1)
			a.log.Warn("registration failed; will retry", "err", err, "failures", failures, "retry_in", wait.Round(time.Second))
		} else {
			if failures > 0 {
				a.log.Info("registration recovered", "after_failures", failures)
			}
			failures = 0
		}
		timer := clk.NewTimer(wait)
		due := clk.Now().Add(wait)
		changed := false // the identity changed: register when the gap allows
		// kicked handles a change of identity; true: register now.
		kicked := func() bool {
			if changed {
				return false // already due: the registration takes the identity as it is then
			}
			changed = true
			a.mu.Lock()
			since := clk.Now().Sub(a.lastSent)
			a.mu.Unlock()
			timer.Stop()
			if since >= RegisterGap {
				return true
			}
			// Not before a minute after the last one (a clock set back
			// counts as just now), nor later than already due.
			d := min(RegisterGap-max(since, 0), due.Sub(clk.Now()))
			timer = clk.NewTimer(d)
			a.log.Info("the identity changed; registering again once a minute has passed since the last registration", "in", d.Round(time.Second))
			return false
		}
	waiting:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C():
				if !changed {
					a.readDevice(ctx)
				}
				break waiting
			case <-recheck.C():
				a.readDevice(ctx)
				recheck = clk.NewTimer(a.opts.DeviceRecheck)
				select {
				case <-a.serialSeen: // the read found a new identity
					if kicked() {
						break waiting
					}
				default:
				}
			case <-a.serialSeen:
				if kicked() {
					break waiting
				}
			}
		}
	}
}

// readDevice reads the device now and records the outcome; a changed
// fiscal serial triggers a registration. It does nothing when
// device.port is "none" or while the POS's report is fresh: the device
// belongs to the POS, and the POS has said what it is. The port the POS
// reported is asked instead of scanning.
func (a *Agent) readDevice(ctx context.Context) {
	if a.reader.Port() == device.PortNone || a.ids.posFresh() {
		return
	}
	a.trace.reset()
	id, err := a.reader.ReadVia(ctx, a.ids.known(), a.ids.posPort())
	if ctx.Err() != nil {
		return // stopping: not the device's fault
	}
	if werr := atomicfile.Write(filepath.Join(a.cfg.DataDir, DeviceTraceFile), a.trace.bytes(), 0o600); werr != nil {
		a.log.Debug("cannot keep the device trace", "err", werr)
	}
	a.mu.Lock()
	prevErr := a.lastDeviceErr
	a.lastDeviceErr = ""
	if err != nil {
		a.lastDeviceErr = err.Error()
	}
	a.mu.Unlock()
	if err != nil && err.Error() != prevErr {
		if known := a.ids.current(); known.FiscalSerial != "" {
			a.log.Warn("cannot read the cash register; using the identity from another source", "err", err, "source", known.Source, "fiscal_serial", known.FiscalSerial)
		} else {
			a.log.Error("cannot read the cash register and no identity is known (connect the ÖKC, set device.fiscal_serial, or let the POS report it: PUT /v1/device)", "err", err)
		}
	} else if err == nil && prevErr != "" {
		a.log.Info("cash register readable again", "fiscal_serial", id.FiscalSerial, "port", id.Port, "protocol", id.Protocol)
	}
	if a.ids.deviceRead(id, err) {
		a.kickRegistration()
	}
}

// kickRegistration makes the registration loop register now.
func (a *Agent) kickRegistration() {
	select {
	case a.serialSeen <- struct{}{}:
	default:
	}
}

// Device is the identity and its sources (GET /v1/device).
func (a *Agent) Device() localapi.Device { return a.ids.view() }

// ReportDevice keeps the POS's report (PUT /v1/device) and asks for a
// registration when it changes the identity in use; it answers at once —
// registrations that reports ask for are coalesced (RegisterGap).
func (a *Agent) ReportDevice(r localapi.DeviceReport) (localapi.Device, error) {
	changed, err := a.ids.report(r)
	if err != nil {
		return localapi.Device{}, err
	}
	if changed {
		a.kickRegistration()
	}
	return a.ids.view(), nil
}

var _ localapi.DeviceIdentity = (*Agent)(nil)

// errNoSerial: registering without a fiscal serial would create a bogus
// record on the licence server.
var errNoSerial = errors.New("no fiscal serial known: connect the ÖKC (device.port), set device.fiscal_serial, or let the POS report it (PUT /v1/device)")

func (a *Agent) register(ctx context.Context) error {
	if a.tposl == nil {
		return nil // tposl.url is not set; the start-up warning said so
	}
	id := a.ids.current()
	if id.FiscalSerial == "" {
		a.setRegistration(nil, errNoSerial)
		return errNoSerial
	}
	params, err := a.buildParams(ctx, id)
	if err != nil {
		a.setRegistration(nil, err)
		return err
	}
	a.mu.Lock()
	a.lastSent = a.opts.Clock.Now()
	a.mu.Unlock()
	ret, err := a.tposl.Register(ctx, params)
	if err != nil {
		a.setRegistration(nil, err)
		return err
	}
	rec := tposl.Record{Return: ret, FiscalSerial: id.FiscalSerial, CheckedAt: a.now()}
	if err := a.cache.Save(rec); err != nil {
		a.log.Warn("cannot persist the licence answer", "err", err)
	}
	a.setRegistration(&rec, nil)
	// The licence server answered: the network is back, so an offline
	// outbox probes within outbox.reconnect_jitter instead of at the end of
	// its backoff (jittered: a fleet registers in the same second after an
	// outage); a paused one keeps the server's Retry-After.
	a.queue.Kick()
	lic := a.License()
	a.log.Info("registered with TPOSL", "status", ret.Status, "license", lic.State, "days_left", lic.DaysLeft, "fiscal_serial", id.FiscalSerial)
	return nil
}

func (a *Agent) buildParams(ctx context.Context, id device.Identity) (tposl.Params, error) {
	return RegistrationParams(ctx, a.cfg, id, a.now(), a.log)
}

// RegistrationParams builds the registration of the till with identity id
// at time now, as the agent sends it (doctor sends the same). Problems
// reading the backup dir or the TPOS version are logged to log and leave
// those fields empty.
func RegistrationParams(ctx context.Context, cfg *config.Config, id device.Identity, now time.Time, log *slog.Logger) (tposl.Params, error) {
	s := cfg.Store
	facts := tposl.Facts{
		FiscalSerial: id.FiscalSerial,
		ECRSerial:    id.ECRSerial,
		HostName:     device.Host(ctx).HostName,
		Now:          now,
		AgentVersion: Version,
	}
	if s.BackupDir != "" {
		t, err := device.NewestBackup(s.BackupDir)
		if err != nil {
			log.Warn("cannot read the backup dir; SON_YEDEK_ZAMANI left empty", "dir", s.BackupDir, "err", err)
		}
		facts.LastBackup = t
	}
	if s.TPOSDir != "" && (s.TPOSVersion == "" || s.TPOSVersionSeq == "") {
		v, seq, err := device.TPOSVersion(s.TPOSDir)
		if err != nil {
			log.Warn("cannot read the TPOS version", "dir", s.TPOSDir, "err", err)
		}
		facts.TPOSVersion, facts.TPOSVersionSeq = v, seq
	}
	return tposl.Build(tposl.Store{
		TaxNumber: s.TaxNumber, TaxOffice: s.TaxOffice, CompanyName: s.CompanyName,
		PosNo: s.PosNo, PosType: s.PosType, POSSerial: s.POSSerial, ReceiptLimit: s.ReceiptLimit,
		EInvoiceActive: s.EInvoiceActive, EInvoicePrefix: s.EInvoicePrefix,
		EArchiveActive: s.EArchiveActive, EArchivePrefix: s.EArchivePrefix,
		EArchiveNameRequiredLimit: s.EArchiveNameRequiredLimit, EArchiveEmailRequired: s.EArchiveEmailRequired,
		PeriodYear: s.PeriodYear, TPOSVersion: s.TPOSVersion, TPOSVersionSeq: s.TPOSVersionSeq,
	}, facts, tposl.Credentials{Username: cfg.TPOSL.Username, Password: cfg.TPOSL.Password.Reveal()})
}

// setRegistration records the outcome of one registration attempt.
func (a *Agent) setRegistration(rec *tposl.Record, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	result := "ok"
	if err != nil {
		result = "error"
		a.lastRegErr = oneLine(err.Error())
	} else {
		a.lastRegErr = ""
		a.lastReg = rec.CheckedAt
		a.registered = rec.Return.Status
		a.record = rec
		a.fromServer = true
	}
	a.regCount[result]++
}

// License is the licence state now: the server's last answer re-evaluated
// at the current time; while offline, the persisted answer, decaying to
// unknown after tposl.grace.
//
// Its text is safe to show (see safeText).
func (a *Agent) License() (l tposl.License) {
	defer func() { a.safeText(&l) }()
	serial := a.ids.current().FiscalSerial
	a.mu.Lock()
	rec, fromServer := a.record, a.fromServer
	a.mu.Unlock()
	now := a.now()
	grace := a.cfg.TPOSL.Grace.Duration
	if rec == nil {
		if a.tposl == nil {
			return tposl.Unknown("tposl.url is not set: the till is not registered")
		}
		return tposl.Unknown("the licence server has not answered yet")
	}
	if serial == "" {
		serial = rec.FiscalSerial
	}
	if fromServer && now.Sub(rec.CheckedAt) < grace {
		l = tposl.Evaluate(rec.Return, serial, now)
		l.CheckedAt = rec.CheckedAt
		return l
	}
	return tposl.Effective(*rec, serial, now, grace)
}

// loadLicenseCache loads the persisted answer at startup.
func (a *Agent) loadLicenseCache() {
	if rec, err := a.cache.Load(); err == nil {
		a.record = &rec
		a.registered = rec.Return.Status
		a.lastReg = rec.CheckedAt
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
