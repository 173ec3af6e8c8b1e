// Package testrig holds what the tests of several packages share and no
// shipped code may link: WaitFor, the one way a test waits for a
// condition; Run, the one way a test runs a loop in a goroutine and waits
// for it; and Buffer, output read while it is written. The rigs themselves live below it (lossyfs, the power-cut
// filesystem). It must not be imported by non-test code.
package testrig

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test if timeout passes first. It is for conditions another goroutine or
// process makes true; a timer the test controls is advanced through a fake
// clock instead.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Buffer is a bytes.Buffer that a process or goroutine may write while the
// test reads it (logs, a child's output).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Run runs fn in a goroutine with a context that stop cancels. stop waits
// for fn to return (reporting it if that takes longer than timeout) and
// reports a non-nil error of fn as what failed; it runs once, and again
// as a cleanup, so that no test leaves the goroutine behind.
func Run(t testing.TB, what string, timeout time.Duration, fn func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			var err error
			select {
			case err = <-done:
			case <-time.After(timeout):
				t.Errorf("%s did not return within %v of cancel", what, timeout)
				err = <-done
			}
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
