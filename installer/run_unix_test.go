//go:build unix

package installer

import (
	"context"
	"log/slog"
	"syscall"
	"testing"
	"time"
)

// On the foreground path (a terminal, or systemd, which stops a service
// with SIGTERM) Run wires the stop signals itself: the caller passes a
// context without them.
func TestRunForegroundStopsOnSIGTERM(t *testing.T) {
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), RunOptions{Main: func(ctx context.Context, _ slog.Handler) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		}})
	}()
	<-started
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after SIGTERM = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of SIGTERM")
	}
}
