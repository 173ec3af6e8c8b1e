// Package agent wires the parts of tposagent together: it reads the fiscal
// identity (device), registers the till and keeps the licence state
// (agent/tposl), delivers records through the durable queue (outbox) to the
// ERP API (agent/oduyo), and serves the local API (agent/localapi) for the
// POS application. It owns no protocol of its own. It may import the rooms
// below it (the clients, device, outbox, the config) but never installer or
// cmd, and never a fake.
//
// The life of an Agent: New(cfg, opts) → Run(ctx), which returns when ctx is
// done, after stopping the local API, abandoning in-flight requests within a
// bounded grace and closing the bbolt file.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/internal/clock"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/outbox"
)

// Options are the parts of an Agent that tests and the demo replace.
type Options struct {
	Logger *slog.Logger // nil: discard
	// Now is the till's wall clock for the licence logic; nil means
	// Clock.Now.
	Now func() time.Time
	// DeviceRecheck is how often the device identity is re-read to notice
	// a swapped cash register; 0 means 30 minutes. Each read opens the
	// port (for at most device.hold_max at a time, and a COM port is
	// exclusive on Windows), so it is kept rare; while the POS's report is
	// fresh there is no read at all.
	DeviceRecheck time.Duration
	// RetryBase is the first backoff step of the outbox (0: its default).
	RetryBase time.Duration
	// Clock drives the timers of the registration loop and of the outbox
	// (nil: real time), so that a test moves time instead of waiting.
	Clock clock.Clock
	// Rand is the outbox's jitter source (nil: math/rand/v2).
	Rand func() float64
	// ListenRetryMax is the longest wait between two tries of a local API
	// port that is taken (0: ListenRetryMax).
	ListenRetryMax time.Duration
}

// Agent is one running till agent.
type Agent struct {
	cfg    *config.Config
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	queue  *outbox.Queue
	listen apiListen // the local API's listener (apilisten.go)
	reader *device.Reader
	tposl  *tposl.Client
	oduyo  *oduyo.Client
	cache  tposl.Cache

	startedAt time.Time
	trace     lastTrace // the bytes of the device read in progress (its own lock)
	api       *localapi.Server
	enqueues  enqueueHealth

	mu            sync.Mutex
	ids           *identities
	lastDeviceErr string        // the last device read's error, to log a new one once
	record        *tposl.Record // last answer of the licence server (persisted)
	fromServer    bool          // record came from the server in this run
	registered    bool
	lastReg       time.Time
	lastRegErr    string
	regCount      map[string]uint64 // registrations by result
	serialSeen    chan struct{}     // fiscal serial changed: register now (at most once per RegisterGap)
	lastSent      time.Time         // when a registration last went to TPOSL (Clock time)
	conn          connWatch         // when Ödüyo went online or offline
}

// StopGrace is how long requests in flight (a record being sent, a call
// of the local API) may take to finish once the agent is asked to stop;
// then their contexts are cancelled. The whole stop stays well inside the
// 5 s a service manager allows.
const StopGrace = 2 * time.Second

// ErrAlreadyRunning is returned by New when another agent holds the data dir.
var ErrAlreadyRunning = errors.New("another tposagent is already running")

// New opens the outbox (a second agent fails at once) and binds the local
// API; a port that is taken does not fail: Run keeps trying it
// (apilisten.go). Nothing slow happens here.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Clock = clock.OrReal(opts.Clock)
	if opts.Now == nil {
		opts.Now = opts.Clock.Now
	}
	if opts.DeviceRecheck == 0 {
		opts.DeviceRecheck = 30 * time.Minute
	}
	a := &Agent{
		cfg:        cfg,
		opts:       opts,
		log:        opts.Logger.With("component", "agent"),
		now:        opts.Now,
		startedAt:  opts.Now(),
		regCount:   map[string]uint64{},
		serialSeen: make(chan struct{}, 1),
		cache:      tposl.Cache{Path: filepath.Join(cfg.DataDir, "license.json")},
	}
	for _, w := range cfg.Warnings() {
		a.log.Warn(w)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}

	if cfg.TPOSL.URL != "" { // else: not registered (a warning says so)
		tc, err := HTTPClient(cfg.TPOSL.CAFile, a.log)
		if err != nil {
			return nil, fmt.Errorf("tposl.ca_file: %w", err)
		}
		a.tposl, err = tposl.New(tposl.Config{URL: cfg.TPOSL.URL, HTTPClient: tc, Timeout: cfg.TPOSL.Timeout.Duration, Logger: opts.Logger.With("component", "tposl")})
		if err != nil {
			return nil, fmt.Errorf("tposl client: %w", err)
		}
	}
	if cfg.Oduyo.BaseURL != "" { // else: records are kept, not sent
		if err := a.newOduyo(); err != nil {
			return nil, err
		}
	}
	var err error
	a.reader, err = device.NewReader(device.Config{
		Port:        cfg.Device.Port,
		Protocol:    cfg.Device.Protocol,
		Baud:        cfg.Device.Baud,
		AckTimeout:  cfg.Device.AckTimeout.Duration,
		Tries:       cfg.Device.Tries,
		ProbeBudget: cfg.Device.ProbeBudget.Duration,
		HoldMax:     cfg.Device.HoldMax.Duration,
		ReopenGap:   cfg.Device.ReopenGap.Duration,
		Scan:        cfg.Device.Scan,
		Exclude:     cfg.Device.Exclude,
		CacheDir:    cfg.DataDir,
		Logger:      opts.Logger.With("component", "device"),
		Trace:       &a.trace,
	})
	if err != nil {
		return nil, fmt.Errorf("device: %w", err)
	}
	a.ids = newIdentities(cfg.Device.FiscalSerial, a.reader.Port(), a.reader.Cached(), filepath.Join(cfg.DataDir, POSDeviceFile),
		cfg.Device.POSReportMaxAge.Duration, opts.Logger.With("component", "identity"), opts.Now)

	a.queue, err = outbox.Open(outbox.Options{
		Path:            filepath.Join(cfg.DataDir, "outbox.db"),
		MaxSize:         int64(cfg.Outbox.MaxSize),
		Concurrency:     cfg.Outbox.Concurrency,
		RetryBase:       opts.RetryBase,
		RetryMax:        cfg.Outbox.RetryMax.Duration,
		RetryAfterMax:   cfg.Outbox.RetryAfterMax.Duration,
		ReconnectJitter: cfg.Outbox.ReconnectJitter.Duration,
		StopGrace:       StopGrace,
		// A frozen disk: a POST is answered within EnqueueTimeout (inside
		// the API's 30 s bound), and Close abandons a hung commit after
		// CloseTimeout, so the whole stop stays inside 5 s.
		EnqueueTimeout: 10 * time.Second,
		CloseTimeout:   time.Second,
		// A disk that fails to open the file must not make the service
		// crash-loop: the licence is still served, records get a 503
		// that says why, and the queue keeps trying.
		KeepTrying: true,
		Clock:      opts.Clock,
		Rand:       opts.Rand,
		Logger:     opts.Logger.With("component", "outbox"),
	})
	if errors.Is(err, outbox.ErrLocked) {
		return nil, fmt.Errorf("%w on data dir %s (stop it first: tposagent stop)", ErrAlreadyRunning, cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	if err := a.listenOnce(); err != nil && !retryable(err) {
		a.queue.Close()
		return nil, fmt.Errorf("local API: listen on %s: %w (change api.listen)", cfg.API.Listen, err)
	}
	a.loadLicenseCache()
	a.api = localapi.NewServer(localapi.NewHandler(localapi.Config{
		Token:   a.cfg.API.Token.Reveal(),
		Queue:   a.localQueue(),
		Status:  a.Status,
		License: a.License,
		Metrics: a.writeMetrics,
		Device:  a,
		Logger:  a.opts.Logger.With("component", "localapi"),
		// The Host names served (against DNS rebinding).
		Listen:       a.cfg.API.Listen,
		AllowedHosts: a.cfg.API.AllowedHosts,
	}), localapi.ServerOptions{ShutdownGrace: StopGrace, Logger: a.opts.Logger.With("component", "localapi")})
	return a, nil
}

// newOduyo builds the Ödüyo client from the config.
func (a *Agent) newOduyo() error {
	oc, err := HTTPClient(a.cfg.Oduyo.CAFile, a.log)
	if err != nil {
		return fmt.Errorf("oduyo.ca_file: %w", err)
	}
	a.oduyo, err = oduyo.New(oduyo.Config{
		BaseURL:    a.cfg.Oduyo.BaseURL,
		APIKey:     a.cfg.Oduyo.APIKey.Reveal(),
		Username:   a.cfg.Oduyo.Username,
		Password:   a.cfg.Oduyo.Password.Reveal(),
		HTTPClient: oc,
		Timeout:    a.cfg.Oduyo.Timeout.Duration,
		Now:        a.opts.Now,
		Logger:     a.opts.Logger.With("component", "oduyo"),
	})
	if err != nil {
		return fmt.Errorf("oduyo client: %w", err)
	}
	return nil
}

// APIAddrFile, in the data dir, holds the address the local API listens
// on (useful when api.listen has port 0).
const APIAddrFile = "api.addr"

// Addr is the local API's address (api.listen while it cannot listen).
func (a *Agent) Addr() net.Addr {
	a.listen.mu.Lock()
	defer a.listen.mu.Unlock()
	if a.listen.ln == nil {
		return apiAddr(a.cfg.API.Listen)
	}
	return a.listen.ln.Addr()
}

// Run runs the agent until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.Close()
	a.log.Info("tposagent started", "version", Version, "api", a.Addr().String(), "data_dir", a.cfg.DataDir)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.serveAPI(gctx) })
	if a.oduyo != nil {
		sender := NewSender(a.oduyo)
		sender.SetLogger(a.opts.Logger.With("component", "sender"))
		// Items accepted by an earlier process may have been in flight
		// when it stopped: their special codes are looked up first.
		if seq, err := a.queue.LastID(); err == nil {
			sender.SetBootSequence(seq)
		} else {
			a.log.Warn("cannot read the outbox sequence; every special code is looked up before it is sent", "err", err)
		}
		g.Go(func() error {
			return a.queue.Run(gctx, sender)
		})
	}
	g.Go(func() error {
		a.registrationLoop(gctx)
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-gctx.Done():
		// A task stuck in a write to a frozen or failing disk (a licence
		// or identity cache, the outbox) must not hold the stop: the
		// service manager wants the process gone within 5 s.
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case err = <-done:
		case <-t.C:
			a.log.Error("stopping without a task that did not end in time (a frozen or failing disk?)", "waited", stopGrace)
		}
	}
	a.log.Info("tposagent stopped")
	return err
}

// stopGrace is how long a stop waits for the agent's tasks; the outbox's
// own close is bounded beside it (outbox.Options.CloseTimeout).
const stopGrace = 2 * time.Second
