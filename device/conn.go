package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.bug.st/serial"
)

// TCPPrefix marks a port that is an ÖKC on the network: "tcp://host:port".
const TCPPrefix = "tcp://"

// watchGrace is how long after its deadline a read or write may still
// return by itself before the watcher closes the port under it, and then
// how long the closed call is given to return before it is left behind.
// Generous: a busy machine (or wine) delays goroutines, and closing the
// port ends the whole probe.
const watchGrace = 2 * time.Second

// closeGrace is how long a call is given to return after the port was
// closed under it before it is counted as stuck and left behind.
const closeGrace = 500 * time.Millisecond

// errIdle is a read that timed out with nothing (an internal signal).
var errIdle = errors.New("read timed out")

// stuck counts goroutines left blocked in a driver call that did not
// return even after the port was closed under it.
var stuck atomic.Int64

// leaveBehind counts a driver call that did not return in time in Stuck
// until wait (which waits for it) returns.
func leaveBehind(wait func()) {
	stuck.Add(1)
	go func() {
		wait()
		stuck.Add(-1)
	}()
}

// Stuck is the number of goroutines still blocked in a serial driver call
// that the watcher abandoned (the port was closed under them and the call
// has not returned yet). It is 0 on a healthy system; the agent shows it in
// its status so a stalled USB adapter is visible.
func Stuck() int { return int(stuck.Load()) }

// rawPort is what the watcher needs of an open port: a read that honours a
// timeout (best effort), a write, and a close that may interrupt both.
type rawPort interface {
	// readTimeout reads into p waiting about d; (0, nil) is a timeout.
	readTimeout(p []byte, d time.Duration) (int, error)
	writeTimeout(p []byte, d time.Duration) (int, error)
	// resetInput drops what is waiting to be read, and returns it where
	// the port can tell (a socket; a serial driver's purge cannot).
	resetInput() []byte
	// abort interrupts pending calls (CancelIoEx on Windows) and closes.
	abort()
	Close() error
}

// conn is an open port whose every read and write ends by its deadline:
// each call runs in its own goroutine, and if it has not returned
// watchGrace after the deadline the port is aborted and the call abandoned
// (ErrStalled). Not safe for concurrent use (one exchange at a time).
type conn struct {
	raw       rawPort
	name      string
	dead      atomic.Bool
	once      sync.Once
	closed    chan struct{} // closed when abort has returned
	leftStuck atomic.Bool   // the abort was counted in stuck
	sent      int           // bytes written, for the log
	recv      int           // bytes read
}

func newConn(raw rawPort, name string) *conn {
	return &conn{raw: raw, name: name, closed: make(chan struct{})}
}

type ioResult struct {
	n   int
	err error
}

// do runs op with a watcher. op gets its own buffer, so an abandoned call
// that returns late cannot write into the caller's memory.
func (c *conn) do(what string, deadline time.Time, op func() (int, error)) (int, error) {
	if c.dead.Load() {
		return 0, fmt.Errorf("%s: port closed after a stalled call: %w", what, ErrStalled)
	}
	done := make(chan ioResult, 1)
	go func() {
		n, err := op()
		done <- ioResult{n: n, err: err}
	}()
	t := time.NewTimer(time.Until(deadline) + watchGrace)
	defer t.Stop()
	select {
	case r := <-done:
		return r.n, r.err
	case <-t.C:
	}
	c.dead.Store(true)
	c.close() // bounded: an abort that hangs too is left behind
	// The driver may still return after the abort; wait a little, then
	// leave it counted.
	select {
	case <-done:
		return 0, fmt.Errorf("%s on %s did not return by its deadline; port closed: %w", what, c.name, ErrStalled)
	case <-time.After(closeGrace):
	}
	leaveBehind(func() { <-done })
	return 0, fmt.Errorf("%s on %s did not return by its deadline and is still blocked after the port was closed: %w", what, c.name, ErrStalled)
}

// read reads into p until deadline. (0, errIdle) when nothing came.
func (c *conn) read(p []byte, deadline time.Time) (int, error) {
	d := time.Until(deadline)
	if d <= 0 {
		return 0, errIdle
	}
	// At least 1 ms: a zero timeout means "return at once" on Unix but is
	// not well defined for Windows COMMTIMEOUTS.
	d = max(d, time.Millisecond)
	own := make([]byte, len(p))
	n, err := c.do("read", deadline, func() (int, error) { return c.raw.readTimeout(own, d) })
	copy(p, own[:n])
	c.recv += n
	switch {
	case err != nil:
		return n, err
	case n == 0:
		return 0, errIdle
	}
	return n, nil
}

// write writes all of p by deadline.
func (c *conn) write(p []byte, deadline time.Time) error {
	own := append([]byte(nil), p...)
	n, err := c.do("write", deadline, func() (int, error) { return c.raw.writeTimeout(own, time.Until(deadline)) })
	c.sent += max(n, 0)
	if err == nil && n < len(p) {
		err = fmt.Errorf("wrote %d of %d bytes: %w", n, len(p), ErrTimeout)
	}
	return err
}

// resetInput drops what is waiting to be read, under the watcher: a
// driver's purge can hang like any other call.
func (c *conn) resetInput() error {
	_, err := c.do("flush input", time.Now(), func() (int, error) {
		c.raw.resetInput()
		return 0, nil
	})
	return err
}

// close aborts the port once. It returns when the abort has, or after
// closeGrace: a driver whose close hangs (a stalled USB adapter) holds a
// goroutine, counted in Stuck until it returns, never the caller.
func (c *conn) close() {
	c.once.Do(func() {
		go func() {
			c.raw.abort()
			close(c.closed)
		}()
	})
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-c.closed:
	case <-t.C:
		if c.leftStuck.CompareAndSwap(false, true) {
			leaveBehind(func() { <-c.closed })
		}
	}
}

// Close closes the port. Safe to call more than once.
func (c *conn) Close() error {
	c.close()
	return nil
}

// dial opens a port by name: "tcp://host:port" or a serial port. With a
// tracer, every byte through the port is recorded.
func dial(ctx context.Context, name string, baud int, timeout time.Duration, tr *tracer) (*conn, error) {
	var raw rawPort
	if addr, ok := strings.CutPrefix(name, TCPPrefix); ok {
		d := net.Dialer{Timeout: timeout}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			tr.comment("port %s: connect: %v", name, err)
			return nil, fmt.Errorf("connect %s: %w", addr, dialError(err))
		}
		raw = &tcpPort{c: c}
	} else {
		p, err := openWatched(ctx, name, baud, timeout+watchGrace)
		if err != nil {
			tr.comment("port %s: open: %v", name, err)
			if errors.Is(err, ErrStalled) || ctx.Err() != nil {
				return nil, fmt.Errorf("open: %w", err)
			}
			return nil, fmt.Errorf("open: %w", openError(err))
		}
		raw = p
	}
	if tr != nil {
		tr.restart()
		tr.comment("port %s opened %s (baud %d)", name, time.Now().Format(time.RFC3339Nano), baud)
		raw = tracePort{rawPort: raw, t: tr}
	}
	return newConn(raw, name), nil
}

// openSerial opens a serial port; tests replace it with a driver that
// hangs.
var openSerial = func(name string, baud int) (rawPort, error) {
	p, err := openSerialPort(name, baud)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// openWatched opens a serial port within limit: a driver whose open hangs
// (a stalled USB adapter, CreateFile on Windows) is left behind, counted in
// Stuck, and the port it opens late is closed at once.
func openWatched(ctx context.Context, name string, baud int, limit time.Duration) (rawPort, error) {
	type opened struct {
		p   rawPort
		err error
	}
	done := make(chan opened, 1)
	go func() {
		p, err := openSerial(name, baud)
		done <- opened{p, err}
	}()
	t := time.NewTimer(limit)
	defer t.Stop()
	var err error
	select {
	case r := <-done:
		return r.p, r.err
	case <-t.C:
		err = fmt.Errorf("opening %s did not return within %v: %w", name, limit, ErrStalled)
	case <-ctx.Done():
		err = ctx.Err()
	}
	leaveBehind(func() {
		if r := <-done; r.err == nil {
			r.p.abort()
		}
	})
	return nil, err
}

// tcpPort is an ÖKC reached over TCP; net.Conn deadlines hold on every OS.
type tcpPort struct {
	c net.Conn
}

func (t *tcpPort) readTimeout(b []byte, d time.Duration) (int, error) {
	_ = t.c.SetReadDeadline(time.Now().Add(d))
	n, err := t.c.Read(b)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return n, nil
		}
		if errors.Is(err, io.EOF) {
			return n, fmt.Errorf("connection closed by the device: %w", ErrDisconnected)
		}
		return n, fmt.Errorf("%v: %w", err, ErrDisconnected)
	}
	return n, nil
}

func (t *tcpPort) writeTimeout(b []byte, d time.Duration) (int, error) {
	_ = t.c.SetWriteDeadline(time.Now().Add(d))
	n, err := t.c.Write(b)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return n, fmt.Errorf("write: %w", ErrTimeout)
		}
		return n, fmt.Errorf("write: %v: %w", err, ErrDisconnected)
	}
	return n, nil
}

// resetInput drops what is already waiting on the socket (at most 32
// KiB) and returns it.
func (t *tcpPort) resetInput() []byte {
	var b [512]byte
	var out []byte
	for range 64 {
		_ = t.c.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := t.c.Read(b[:])
		out = append(out, b[:max(n, 0)]...)
		if n == 0 || err != nil {
			return out
		}
	}
	return out
}

func (t *tcpPort) abort()       { _ = t.c.Close() }
func (t *tcpPort) Close() error { return t.c.Close() }

// dialError maps a TCP connect failure.
func dialError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, syscall.ECONNREFUSED), isRefused(err):
		return fmt.Errorf("connection refused: %w", ErrNoDevice)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%v: %w", err, ErrTimeout)
	}
	return fmt.Errorf("%v: %w", err, ErrNoDevice)
}

// openError maps an open failure to a sentinel, keeping the cause's text.
func openError(err error) error {
	for _, known := range []error{ErrBusy, ErrNoDevice, ErrPermission, ErrBadConfig} {
		if errors.Is(err, known) {
			return err // already says what it is (the lock checks)
		}
	}
	if isSharingViolation(err) {
		return fmt.Errorf("another program has the port open: %w", ErrBusy)
	}
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortBusy:
			return fmt.Errorf("another program has the port open: %w", ErrBusy)
		case serial.PermissionDenied:
			return ErrPermission
		case serial.PortNotFound:
			return ErrNoDevice
		case serial.InvalidSerialPort:
			return fmt.Errorf("not a usable serial port (%v): %w", pe, ErrNoDevice)
		}
		return pe
	}
	switch {
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("another program has the port open: %w", ErrBusy)
	case errors.Is(err, fs.ErrPermission):
		return ErrPermission
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.EIO):
		return fmt.Errorf("%v: %w", err, ErrNoDevice)
	}
	return err
}
