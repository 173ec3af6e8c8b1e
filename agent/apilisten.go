package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/internal/atomicfile"
)

// The local API's port may be taken when the agent starts (another
// program bound it while the agent was down: at boot, during a restart).
// The agent does not exit then: it keeps trying the port, says so in the
// log (Event Log / journal: warnings go there), in its status and in
// APIWaitFile for the CLI, and serves the moment the port is free.

// APIWaitFile, in the data dir, holds the status warning while the local
// API cannot listen (the CLI shows it when nothing proves to be the
// agent on the port); it is removed once the API listens.
const APIWaitFile = "api.wait"

// ListenRetryMax is the longest wait between two tries of a taken port.
const ListenRetryMax = 5 * time.Second

// APIPortWarning starts the status warning of a port the agent cannot
// listen on (internal/i18n has its Turkish).
const APIPortWarning = "the local API cannot listen on"

// apiPortHeld is how long the warning of a port that was held, once it is
// free again, stays in the status.
const apiPortHeld = 24 * time.Hour

// apiListen is the state of the local API's listener.
type apiListen struct {
	mu       sync.Mutex
	ln       net.Listener
	since    time.Time // the first failure of the current run (zero: none)
	lastErr  string
	inUse    bool      // the last failure was "address in use"
	failures int       // in the current run
	heldFrom time.Time // the last run of failures, once over
	heldTo   time.Time
}

// listenOnce tries the port once; on failure it records why (logged the
// first time and then every tenth try) and returns the error.
func (a *Agent) listenOnce() error {
	ln, err := net.Listen("tcp", a.cfg.API.Listen)
	now := time.Now()
	l := &a.listen
	l.mu.Lock()
	if err == nil {
		l.ln = ln
		failures, since := l.failures, l.since
		if failures > 0 {
			l.heldFrom, l.heldTo = since, now
		}
		l.failures, l.since, l.lastErr = 0, time.Time{}, ""
		l.mu.Unlock()
		// A listen address with port 0 is resolved here; clients read it back.
		if err := atomicfile.Write(filepath.Join(a.cfg.DataDir, APIAddrFile), []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
			a.log.Warn("cannot record the local API address", "err", err)
		}
		if err := os.Remove(filepath.Join(a.cfg.DataDir, APIWaitFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("cannot remove "+APIWaitFile, "err", err)
		}
		if failures > 0 {
			a.log.Warn("the local API listens again: the port is free", "addr", ln.Addr().String(), "failures", failures, "held_since", since.Format(time.RFC3339))
		}
		return nil
	}
	if !retryable(err) {
		return err
	}
	if l.failures == 0 {
		l.since = now
	}
	l.failures++
	l.inUse = addrInUse(err)
	l.lastErr = err.Error()
	failures := l.failures
	l.mu.Unlock()
	if failures == 1 || failures%10 == 0 {
		if l.inUse {
			a.log.Error("the local API port is held by another program: the POS and the CLI cannot reach the agent until it is freed; retrying",
				"addr", a.cfg.API.Listen, "failures", failures, "find_it", localapi.PortHint(a.cfg.API.Listen))
		} else {
			a.log.Error("the local API cannot listen; retrying", "addr", a.cfg.API.Listen, "err", err, "failures", failures)
		}
	}
	// Written once for a run of failures (and again now and then, in case
	// it was removed): not a disk write on every try.
	if w := a.apiPortWarning(now); w != "" && (failures == 1 || failures%10 == 0) {
		if err := atomicfile.Write(filepath.Join(a.cfg.DataDir, APIWaitFile), []byte(w+"\n"), 0o600); err != nil && failures == 1 {
			a.log.Warn("cannot write "+APIWaitFile, "err", err)
		}
	}
	return err
}

// retryable: a listen error that may go away (the port taken, the address
// not yet on the machine, a name not yet resolved) rather than one in
// api.listen itself (an invalid port).
func retryable(err error) bool {
	var ae *net.AddrError
	return !errors.As(err, &ae)
}

// serveAPI serves the local API, first waiting for its port when New
// could not bind it.
func (a *Agent) serveAPI(ctx context.Context) error {
	wait := 250 * time.Millisecond
	for {
		a.listen.mu.Lock()
		ln := a.listen.ln
		a.listen.mu.Unlock()
		if ln != nil {
			return a.api.Serve(ctx, ln)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, a.listenRetryMax())
		a.listenOnce()
	}
}

func (a *Agent) listenRetryMax() time.Duration {
	if a.opts.ListenRetryMax > 0 {
		return a.opts.ListenRetryMax
	}
	return ListenRetryMax
}

// apiPortWarning is the status warning of the port: while the API cannot
// listen, and for a day after the port was held by another program.
func (a *Agent) apiPortWarning(now time.Time) string {
	l := &a.listen
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.failures > 0 && l.inUse:
		return fmt.Sprintf("%s %s since %s: another program holds the port (retrying every %s; find it: %s)",
			APIPortWarning, a.cfg.API.Listen, l.since.Format(time.RFC3339), a.listenRetryMax(), localapi.PortHint(a.cfg.API.Listen))
	case l.failures > 0:
		return fmt.Sprintf("%s %s since %s: %s (retrying every %s)", APIPortWarning, a.cfg.API.Listen, l.since.Format(time.RFC3339), l.lastErr, a.listenRetryMax())
	case !l.heldTo.IsZero() && now.Sub(l.heldTo) < apiPortHeld:
		return fmt.Sprintf("the local API port %s was taken from %s to %s: a POS that called then may have sent its token to another program (change api.token if in doubt)",
			a.cfg.API.Listen, l.heldFrom.Format(time.RFC3339), l.heldTo.Format(time.RFC3339))
	}
	return ""
}

// addrInUse reports whether err is "address already in use" (on Windows
// also "access denied", the answer for a port bound exclusively).
func addrInUse(err error) bool {
	var en syscall.Errno
	if !errors.As(err, &en) {
		return false
	}
	if runtime.GOOS == "windows" {
		return en == 10048 || en == 10013 // WSAEADDRINUSE, WSAEACCES
	}
	return errors.Is(en, syscall.EADDRINUSE)
}

// apiAddr is the configured address, while the API does not listen.
type apiAddr string

func (a apiAddr) Network() string { return "tcp" }
func (a apiAddr) String() string  { return string(a) }
