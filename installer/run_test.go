package installer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/config"
)

// drain returns the states queued in ch without blocking.
func drain(ch chan state) []state {
	var got []state
	for {
		select {
		case s := <-ch:
			got = append(got, s)
		default:
			return got
		}
	}
}

func TestExecuteStopOrder(t *testing.T) {
	for _, c := range []struct {
		name string
		cmd  ctrl
	}{{"stop", ctrlStop}, {"shutdown", ctrlShutdown}} {
		t.Run(c.name, func(t *testing.T) {
			reqs := make(chan ctrl, 1)
			status := make(chan state, 16)
			started := make(chan struct{})
			seenAtCancel := make(chan []state, 1)
			main := func(ctx context.Context) error {
				close(started)
				<-ctx.Done()
				// Everything execute reported before cancelling is in the
				// buffer now: StopPending must be there already.
				seenAtCancel <- drain(status)
				return ctx.Err()
			}
			done := make(chan error, 1)
			go func() {
				done <- execute(context.Background(), main, reqs, status, 5*time.Second, slog.New(slog.DiscardHandler))
			}()
			<-started
			reqs <- c.cmd
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("execute did not return after a stop request")
			}
			if err != nil {
				t.Fatalf("execute after %s: %v, want nil (a clean stop)", c.name, err)
			}
			got := <-seenAtCancel
			want := []state{stateStartPending, stateRunning, stateStopPending}
			if len(got) != len(want) {
				t.Fatalf("states before cancel = %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("states before cancel = %v, want %v", got, want)
				}
			}
		})
	}
}

func TestExecuteStartDoesNotWaitForMain(t *testing.T) {
	reqs := make(chan ctrl)
	status := make(chan state) // unbuffered: each report is seen as it happens
	release := make(chan struct{})
	main := func(ctx context.Context) error {
		<-release // a slow start: probing the device, registering …
		<-ctx.Done()
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- execute(context.Background(), main, reqs, status, 5*time.Second, nil2discard()) }()
	deadline := time.After(5 * time.Second)
	for _, want := range []state{stateStartPending, stateRunning} {
		select {
		case got := <-status:
			if got != want {
				t.Fatalf("state %v, want %v", got, want)
			}
		case <-deadline:
			t.Fatalf("no %v while main is still starting: the start waits for the agent", want)
		}
	}
	reqs <- ctrlInterrogate
	if got := <-status; got != stateRunning {
		t.Fatalf("interrogate answered %v, want running", got)
	}
	close(release)
	reqs <- ctrlStop
	if got := <-status; got != stateStopPending {
		t.Fatalf("after stop: %v, want stop-pending", got)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func nil2discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestExecuteMainExitsOnItsOwnIsAFailure(t *testing.T) {
	boom := errors.New("bbolt open: timeout")
	for _, c := range []struct {
		name string
		ret  error
	}{{"error", boom}, {"nil", nil}} {
		t.Run(c.name, func(t *testing.T) {
			status := make(chan state, 16)
			err := execute(context.Background(), func(context.Context) error { return c.ret }, make(chan ctrl), status, time.Second, nil2discard())
			if err == nil {
				t.Fatal("execute returned nil after the agent ended by itself; the service manager would not restart it")
			}
			if c.ret != nil && !errors.Is(err, boom) {
				t.Fatalf("error %v does not wrap the agent's error", err)
			}
		})
	}
}

// A stop that outlasts the deadline is still a stop the manager asked for:
// a failure here would make the recovery actions start the service again
// right after an admin or an upgrade stopped it.
func TestExecuteStopTimeoutIsNotAFailure(t *testing.T) {
	reqs := make(chan ctrl, 1)
	status := make(chan state, 16)
	stuck := make(chan struct{})
	mainDone := make(chan struct{})
	reqs <- ctrlStop
	err := execute(context.Background(), func(context.Context) error {
		defer close(mainDone)
		<-stuck
		return nil
	}, reqs, status, 50*time.Millisecond, nil2discard())
	close(stuck)
	<-mainDone
	if err != nil {
		t.Fatalf("execute after a stop that hit the deadline = %v, want nil (exit 0, no recovery action)", err)
	}
	if got := drain(status); len(got) == 0 || got[len(got)-1] != stateStopPending {
		t.Fatalf("states %v, want stop-pending last", got)
	}
}

// Under the service manager only its requests stop the agent: a cancelled
// parent context (what a console signal such as the CTRL_LOGOFF_EVENT a
// service gets when a cashier logs off would cause if it were wired) leaves
// the agent running until Stop arrives.
func TestExecuteIgnoresParentCancellation(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	reqs := make(chan ctrl)
	status := make(chan state, 16)
	running := make(chan struct{})
	stopped := make(chan struct{})
	main := func(ctx context.Context) error {
		close(running)
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	}
	done := make(chan error, 1)
	go func() { done <- execute(parent, main, reqs, status, 5*time.Second, nil2discard()) }()
	send := func(c ctrl) {
		t.Helper()
		select {
		case reqs <- c:
		case err := <-done:
			<-stopped
			t.Fatalf("execute returned (%v) after the parent context was cancelled; only the service manager may stop the agent", err)
		}
	}
	<-running
	cancelParent()
	// The service loop is still serving requests after the cancellation:
	// interrogations are answered with running, and main is not stopped.
	send(ctrlInterrogate)
	send(ctrlInterrogate) // taken only once the first has been served
	select {
	case <-stopped:
		t.Fatal("the agent stopped when the parent context was cancelled")
	default:
	}
	send(ctrlStop)
	if err := <-done; err != nil {
		t.Fatalf("execute after stop = %v", err)
	}
	<-stopped
	got := drain(status)
	want := []state{stateStartPending, stateRunning, stateRunning, stateRunning, stateStopPending}
	if len(got) != len(want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("states %v, want %v", got, want)
		}
	}
}

func TestRunForeground(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	gotSysLog := make(chan slog.Handler, 1)
	go cancel()
	err := Run(ctx, RunOptions{Main: func(ctx context.Context, sysLog slog.Handler) error {
		gotSysLog <- sysLog
		<-ctx.Done()
		return ctx.Err()
	}})
	if err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if h := <-gotSysLog; h != nil {
		t.Fatalf("foreground Main got a system log handler %T, want nil", h)
	}

	boom := errors.New("boom")
	if err := Run(context.Background(), RunOptions{Main: func(context.Context, slog.Handler) error { return boom }}); !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the Main error", err)
	}
	if err := Run(context.Background(), RunOptions{}); err == nil {
		t.Fatal("Run without Main returned nil")
	}
}

func TestSysLogHandler(t *testing.T) {
	type entry struct {
		level slog.Level
		line  string
	}
	var got []entry
	h := newSysLogHandler(func(l slog.Level, line string) error {
		got = append(got, entry{l, line})
		return nil
	})
	log := slog.New(h).With("component", "agent").WithGroup("oduyo")
	log.Info("registered") // not for the system log
	log.Warn("login failed", "user", "kasa 1", "password", config.Secret("hunter2-şifre"), "api_key", config.Secret("K3Y"))
	log.Error("outbox full", slog.Group("outbox", "pending", 12))
	if len(got) != 2 {
		t.Fatalf("system log got %d entries, want 2 (warn, error): %v", len(got), got)
	}
	if got[0].level != slog.LevelWarn || !strings.HasPrefix(got[0].line, "login failed component=agent oduyo.user=\"kasa 1\"") {
		t.Fatalf("warn line = %q", got[0].line)
	}
	if got[1].level != slog.LevelError || !strings.Contains(got[1].line, "oduyo.outbox.pending=12") {
		t.Fatalf("error line = %q", got[1].line)
	}
	all := got[0].line + got[1].line
	for _, s := range []string{"hunter2", "K3Y"} {
		if strings.Contains(all, s) {
			t.Fatalf("system log leaked a secret: %q", all)
		}
	}

	failing := newSysLogHandler(func(slog.Level, string) error { return errors.New("event log full") })
	if err := failing.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelError, "x", 0)); err == nil || !strings.Contains(err.Error(), "write system log") {
		t.Fatalf("Handle error = %v", err)
	}
}

// TestRelay is the Windows handler's loop without Windows: requests in,
// states out, Interrogate answered with the current state, a second Stop
// while stopping ignored.
func TestRelay(t *testing.T) {
	in := make(chan ctrl)
	var mu sync.Mutex
	var got []state
	report := func(s state) {
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	}
	snapshot := func() []state {
		mu.Lock()
		defer mu.Unlock()
		return append([]state(nil), got...)
	}
	running := make(chan struct{})
	var cancelled atomic.Bool
	main := func(ctx context.Context) error {
		close(running)
		<-ctx.Done()
		cancelled.Store(true)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- relay(context.Background(), main, in, report, 5*time.Second, nil2discard()) }()
	<-running
	in <- ctrlInterrogate
	in <- ctrlShutdown
	select {
	case in <- ctrlStop: // may or may not be taken before relay returns
	case err := <-done:
		done <- err
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !cancelled.Load() {
		t.Fatal("main was not cancelled")
	}
	s := snapshot()
	if len(s) < 4 || s[0] != stateStartPending || s[1] != stateRunning || s[len(s)-1] != stateStopPending {
		t.Fatalf("states %v", s)
	}
	interrogated := false
	for _, x := range s[2 : len(s)-1] {
		if x == stateRunning {
			interrogated = true
		}
	}
	if !interrogated {
		t.Fatalf("interrogate not answered with running: %v", s)
	}

	// The agent failing on its own ends the relay with an error.
	err := relay(context.Background(), func(context.Context) error { return errors.New("disk full") }, make(chan ctrl), func(state) {}, time.Second, nil2discard())
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("relay after a failing agent: %v", err)
	}
}
