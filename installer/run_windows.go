//go:build windows

package installer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
)

// Event IDs written to the Event Log.
const (
	eventWarning = 2
	eventError   = 3
)

// runService runs opts.Main under the service control manager when the
// process was started by it. The marker on the service's command line
// (opts.Service) says so for sure; without it svc.IsWindowsService decides,
// and when it cannot tell, svc.Run is tried. Either way
// ERROR_FAILED_SERVICE_CONTROLLER_CONNECT means "not started by the
// manager" (someone typed "run --service" in a console): the agent then runs
// in the foreground, with a warning when the marker was given.
func runService(ctx context.Context, opts RunOptions) (bool, error) {
	if !opts.Service {
		isSvc, err := svc.IsWindowsService()
		if err == nil && !isSvc {
			return false, nil
		}
	}
	h := &handler{ctx: ctx, opts: opts}
	runErr := svc.Run(opts.Name, h)
	if errors.Is(runErr, windows.ERROR_FAILED_SERVICE_CONTROLLER_CONNECT) {
		if opts.Service {
			opts.Logger.Warn("--service given, but the service control manager did not start this process; running in the foreground")
		}
		return false, nil
	}
	if h.err != nil {
		return true, h.err
	}
	return true, runErr
}

type handler struct {
	ctx  context.Context
	opts RunOptions
	err  error
}

// Execute adapts the Windows service control requests to execute.
func (h *handler) Execute(_ []string, r <-chan svc.ChangeRequest, changes chan<- svc.Status) (bool, uint32) {
	var sysLog slog.Handler
	if el, err := eventlog.Open(h.opts.Name); err == nil {
		defer el.Close()
		sysLog = newSysLogHandler(func(l slog.Level, line string) error {
			if l >= slog.LevelError {
				return el.Error(eventError, line)
			}
			return el.Warning(eventWarning, line)
		})
	} else {
		h.opts.Logger.Warn("open event log", "err", err)
	}
	in := make(chan ctrl)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			var c ctrl
			select {
			case req := <-r:
				switch req.Cmd {
				case svc.Interrogate:
					c = ctrlInterrogate
				case svc.Stop:
					c = ctrlStop
				case svc.Shutdown:
					c = ctrlShutdown
				default:
					continue
				}
			case <-done:
				return
			}
			select {
			case in <- c:
			case <-done:
				return
			}
		}
	}()
	report := func(s state) {
		switch s {
		case stateStartPending:
			changes <- svc.Status{State: svc.StartPending}
		case stateRunning:
			changes <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
		case stateStopPending:
			changes <- svc.Status{State: svc.StopPending}
		}
	}
	main := func(ctx context.Context) error { return h.opts.Main(ctx, sysLog) }
	err := relay(h.ctx, main, in, report, h.opts.StopTimeout, h.opts.Logger)
	if err != nil {
		h.err = err
		if sysLog != nil {
			_ = sysLog.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelError, err.Error(), 0))
		}
		// A service-specific exit code: with failure actions on non-crash
		// failures set, the recovery actions restart the service.
		return true, 1
	}
	return false, 0
}
