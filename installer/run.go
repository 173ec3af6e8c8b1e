package installer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// DefaultName is the service name on every platform.
const DefaultName = "tposagent"

// RunOptions configures Run.
type RunOptions struct {
	// Name is the service name (default "tposagent"); on Windows it is also
	// the Event Log source.
	Name string
	// Service is the marker on the service's own command line ("run
	// --service", written by install): a service manager runs this process.
	// On Windows the process then connects to the service control manager
	// without relying on svc.IsWindowsService, which is false wherever the
	// service does not run in session 0 (wine runs every process in session
	// 1). On Linux systemd stops the service with SIGTERM, so the marker
	// changes nothing there.
	Service bool
	// Main runs the agent until ctx is done; it must return within ~5s of
	// cancellation. sysLog, when non-nil, receives warnings and errors for
	// the platform's system log (Windows Event Log); nil in the foreground.
	Main func(ctx context.Context, sysLog slog.Handler) error
	// StopTimeout bounds the wait for Main after a stop request under the
	// service manager (default 10s); the service then reports stopped anyway
	// and exits 0, because a non-zero exit would make the manager's recovery
	// actions restart a service that an admin or an upgrade just stopped.
	StopTimeout time.Duration
	// Logger receives the service wrapper's own messages; nil discards.
	Logger *slog.Logger
}

// stopSignals stop the agent on the foreground path.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// Run runs Main in the foreground or, when the process was started by the
// Windows service control manager, as a service: the start is reported at
// once with Main in a goroutine, Stop and Shutdown are both accepted,
// StopPending is reported before Main's context is cancelled, and Run waits
// for Main to return.
//
// Signals are wired here, on the foreground path only: SIGINT and SIGTERM
// (Ctrl+C, systemd's stop) cancel Main's context. Under the Windows service
// manager no signal is subscribed and only the manager's requests stop the
// agent: Go delivers CTRL_LOGOFF_EVENT, which Windows sends to services when
// any user logs off, as SIGTERM, and a service that took it as a stop would
// stop at every shift change with exit 0 and no recovery action. The caller
// must therefore not wire signals into ctx itself. Under systemd the
// foreground path is the service path.
func Run(ctx context.Context, opts RunOptions) error {
	if opts.Main == nil {
		return errors.New("run service: no Main function")
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	handled, err := runService(ctx, opts)
	if handled {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, stopSignals...)
	defer stop()
	if err := opts.Main(ctx, nil); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// ctrl is a request from the service manager, independent of the platform.
type ctrl int

const (
	ctrlInterrogate ctrl = iota
	ctrlStop
	ctrlShutdown
	ctrlOther
)

// state is what the service reports to the service manager.
type state int

const (
	stateStartPending state = iota
	stateRunning
	stateStopPending
	stateStopped
)

func (s state) String() string {
	switch s {
	case stateStartPending:
		return "start-pending"
	case stateRunning:
		return "running"
	case stateStopPending:
		return "stop-pending"
	case stateStopped:
		return "stopped"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// execute is the body of a Windows service handler without the Windows
// types: it reports StartPending, starts main in a goroutine and reports
// Running at once (the start never waits for the agent), then serves
// requests. On Stop or Shutdown it reports StopPending first, cancels main's
// context and waits for it up to stopTimeout; a stop that outlasts it is
// still a stop (nil). Only the manager's requests stop main: the
// cancellation of parent does not reach it (parent carries values only).
// If main returns on its own while running, execute returns its error (or a
// plain "exited" error): the caller turns that into a failure exit code so
// that the recovery actions restart the service. A nil error means a stop
// the manager asked for.
func execute(parent context.Context, main func(context.Context) error, reqs <-chan ctrl, status chan<- state, stopTimeout time.Duration, log *slog.Logger) error {
	status <- stateStartPending
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()
	done := make(chan error, 1)
	status <- stateRunning // queued before main runs: an interrogation sees it
	go func() { done <- main(ctx) }()
	log.Info("service running")

	for {
		select {
		case err := <-done:
			// The agent ended without being asked to: a failure, so the
			// service manager applies its recovery actions.
			status <- stateStopPending
			if err == nil || errors.Is(err, context.Canceled) {
				err = errors.New("agent exited unexpectedly")
			}
			log.Error("agent stopped on its own", "err", err)
			return fmt.Errorf("run service: %w", err)
		case c, ok := <-reqs:
			if !ok {
				return stop(cancel, done, status, stopTimeout, log, "channel closed")
			}
			switch c {
			case ctrlInterrogate:
				status <- stateRunning
			case ctrlStop:
				return stop(cancel, done, status, stopTimeout, log, "stop")
			case ctrlShutdown:
				return stop(cancel, done, status, stopTimeout, log, "shutdown")
			}
		}
	}
}

// stop reports StopPending, then cancels and waits for main up to timeout.
// It returns nil either way: the manager asked for the stop, and a failure
// exit here would make its recovery actions start the service again.
func stop(cancel context.CancelFunc, done <-chan error, status chan<- state, timeout time.Duration, log *slog.Logger, why string) error {
	status <- stateStopPending
	log.Info("service stopping", "reason", why)
	cancel()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("agent returned an error while stopping", "err", err)
		}
		return nil
	case <-t.C:
		log.Warn("agent did not stop in time; reporting stopped anyway", "timeout", timeout)
		return nil
	}
}

// relay runs execute for a service manager's handler: in delivers the
// manager's requests, report receives every state to pass on (Interrogate
// is answered with the current state). It returns execute's result once
// the states reported so far have been passed on.
func relay(ctx context.Context, main func(context.Context) error, in <-chan ctrl, report func(state), stopTimeout time.Duration, log *slog.Logger) error {
	reqs := make(chan ctrl, 4)
	states := make(chan state, 8)
	result := make(chan error, 1)
	go func() { result <- execute(ctx, main, reqs, states, stopTimeout, log) }()
	cur := stateStartPending
	for {
		select {
		case s := <-states:
			cur = s
			report(s)
		case c := <-in:
			// States the execution has already sent come first, so that
			// an interrogation never reports one that is out of date.
			for drained := false; !drained; {
				select {
				case s := <-states:
					cur = s
					report(s)
				default:
					drained = true
				}
			}
			switch c {
			case ctrlInterrogate:
				report(cur)
			case ctrlStop, ctrlShutdown:
				select {
				case reqs <- c:
				default: // a stop is already under way
				}
			}
		case err := <-result:
			for len(states) > 0 {
				report(<-states)
			}
			return err
		}
	}
}
