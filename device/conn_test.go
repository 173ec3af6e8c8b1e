package device

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
)

// stubPort is a port whose driver calls block until released, as a stalled
// USB adapter's do; with obeyAbort false, even closing the port does not
// return them (the Windows overlapped-I/O case the watcher exists for).
type stubPort struct {
	obeyAbort  bool
	blockReset bool // the input flush hangs too
	blockAbort bool // closing the port hangs (until free)
	release    chan struct{}
	once       sync.Once
}

func newStub(obeyAbort bool) *stubPort {
	return &stubPort{obeyAbort: obeyAbort, release: make(chan struct{})}
}

func (s *stubPort) block() (int, error) {
	<-s.release
	return 0, errors.New("closed")
}
func (s *stubPort) readTimeout([]byte, time.Duration) (int, error)  { return s.block() }
func (s *stubPort) writeTimeout([]byte, time.Duration) (int, error) { return s.block() }
func (s *stubPort) resetInput() []byte {
	if s.blockReset {
		s.block()
	}
	return nil
}
func (s *stubPort) abort() {
	if s.blockAbort {
		<-s.release
		return
	}
	if s.obeyAbort {
		s.free()
	}
}
func (s *stubPort) free()        { s.once.Do(func() { close(s.release) }) }
func (s *stubPort) Close() error { return nil }

// TestWatcherAbandonsStalledCalls: a read or write the driver does not
// return from ends at its deadline plus the grace, the port is closed, and
// a call that does not return even then is counted by Stuck until it does.
func TestWatcherAbandonsStalledCalls(t *testing.T) {
	for _, obey := range []bool{true, false} {
		for _, op := range []string{"read", "write"} {
			stub := newStub(obey)
			c := newConn(stub, "stub")
			start := time.Now()
			var err error
			if op == "read" {
				_, err = c.read(make([]byte, 8), start.Add(50*time.Millisecond))
			} else {
				err = c.write([]byte{1}, start.Add(50*time.Millisecond))
			}
			took := time.Since(start)
			if !errors.Is(err, ErrStalled) {
				t.Fatalf("%s (abort obeyed %v): err = %v", op, obey, err)
			}
			if limit := 50*time.Millisecond + watchGrace + closeGrace + 500*time.Millisecond; took > limit {
				t.Fatalf("%s (abort obeyed %v): took %v, limit %v", op, obey, took, limit)
			}
			if got := Stuck(); obey && got != 0 || !obey && got != 1 {
				t.Fatalf("%s (abort obeyed %v): Stuck() = %d", op, obey, got)
			}
			// The port is dead: the next call fails at once.
			if _, err := c.read(make([]byte, 1), time.Now().Add(time.Second)); !errors.Is(err, ErrStalled) {
				t.Fatalf("after the stall: %v", err)
			}
			stub.free() // the driver finally returns
			testrig.WaitFor(t, "the stuck goroutine to finish", 5*time.Second, func() bool { return Stuck() == 0 })
			t.Logf("%s, abort obeyed %v: returned after %v", op, obey, took.Round(time.Millisecond))
		}
	}
}

// TestWatcherCoversFlushCloseAndOpen: the other driver calls a stalled USB
// adapter can hang in are bounded too — the input flush before each send,
// closing the port, and opening it — and each one left behind is counted
// by Stuck until it returns.
func TestWatcherCoversFlushCloseAndOpen(t *testing.T) {
	t.Run("flush", func(t *testing.T) {
		stub := newStub(false)
		stub.blockReset = true
		c := newConn(stub, "stub")
		start := time.Now()
		err := c.resetInput()
		if took := time.Since(start); !errors.Is(err, ErrStalled) || took > watchGrace+closeGrace+time.Second {
			t.Fatalf("flush: %v after %v, want ErrStalled within %v", err, took, watchGrace+closeGrace+time.Second)
		}
		if Stuck() != 1 {
			t.Fatalf("Stuck() = %d, want 1", Stuck())
		}
		stub.free()
		testrig.WaitFor(t, "the stuck flush to finish", 5*time.Second, func() bool { return Stuck() == 0 })
	})
	t.Run("close", func(t *testing.T) {
		stub := newStub(false)
		stub.blockAbort = true
		c := newConn(stub, "stub")
		start := time.Now()
		c.Close()
		c.Close() // a second close is not counted again and does not hang
		if took := time.Since(start); took > 2*closeGrace+time.Second {
			t.Fatalf("close took %v", took)
		}
		if Stuck() != 1 {
			t.Fatalf("Stuck() = %d, want 1", Stuck())
		}
		stub.free()
		testrig.WaitFor(t, "the stuck close to finish", 5*time.Second, func() bool { return Stuck() == 0 })
	})
	t.Run("open", func(t *testing.T) {
		stub := newStub(true)
		entered := make(chan struct{})
		old := openSerial
		openSerial = func(string, int) (rawPort, error) {
			close(entered)
			<-stub.release
			return stub, nil
		}
		defer func() { openSerial = old }()
		start := time.Now()
		_, err := dial(context.Background(), "/dev/ttyHUNG", 115200, 100*time.Millisecond, nil)
		took := time.Since(start)
		<-entered
		if !errors.Is(err, ErrStalled) || took > 100*time.Millisecond+watchGrace+time.Second {
			t.Fatalf("open: %v after %v, want ErrStalled by the ACK wait plus the grace", err, took)
		}
		if Stuck() != 1 {
			t.Fatalf("Stuck() = %d, want 1", Stuck())
		}
		// The driver returns at last: the port it opened is closed.
		stub.free()
		testrig.WaitFor(t, "the stuck open to finish", 5*time.Second, func() bool { return Stuck() == 0 })
	})
}
