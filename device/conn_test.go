package device

import (
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
	obeyAbort bool
	release   chan struct{}
	once      sync.Once
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
func (s *stubPort) resetInput()                                     {}
func (s *stubPort) abort() {
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
