package device

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tposagent/tposagent/device/gmp3"
	"go.bug.st/serial"
)

// Limits of one exchange.
const (
	// maxBytesPerTry ends a try early when a port floods us: no valid ECHO
	// answer is preceded by this much noise.
	maxBytesPerTry = 16 << 10
	// readSlice bounds each blocking read so the context is honoured quickly.
	readSlice = 100 * time.Millisecond
)

// errPartial is a timeout with part of a frame received.
var errPartial = fmt.Errorf("partial answer: %w", ErrTimeout)

// sequence numbers the ECHO requests of this process (1…999999, wrapping),
// so a late answer to an earlier request is never taken for the current one.
var sequence atomic.Int64

func nextSequence() int { return gmp3.NormSequence(int(sequence.Add(1))) }

// port is what an exchange needs of a serial port.
type port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
	SetReadTimeout(t time.Duration) error
	ResetInputBuffer() error
}

type openFunc func(name string, baud int) (port, error)

func openSerial(name string, baud int) (port, error) {
	return serial.Open(name, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
}

// Probe reads the identity on one port: it opens it (8N1 at baud), sends the
// read-only ECHO request up to tries times, waiting up to timeout for each
// answer, and closes it. Zero or negative arguments take the defaults.
// Errors match the sentinels of this package (ErrBusy, ErrTimeout …).
func Probe(ctx context.Context, port string, baud int, timeout time.Duration, tries int) (Identity, error) {
	if baud <= 0 {
		baud = DefaultBaud
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if tries <= 0 {
		tries = DefaultTries
	}
	return probe(ctx, openSerial, port, baud, timeout, tries, time.Now, slog.New(slog.DiscardHandler))
}

func probe(ctx context.Context, open openFunc, name string, baud int, timeout time.Duration, tries int, now func() time.Time, log *slog.Logger) (Identity, error) {
	if err := ctx.Err(); err != nil {
		return Identity{}, fmt.Errorf("probe %s: %w", name, err)
	}
	p, err := open(name, baud)
	if err != nil {
		return Identity{}, fmt.Errorf("probe %s: %w", name, openError(err))
	}
	defer p.Close()
	var last, partial error
	for try := 1; try <= tries; try++ {
		r, err := exchange(ctx, p, timeout, now)
		if err == nil {
			return Identity{
				FiscalSerial: r.FiscalSerial, ECRSerial: r.ECRSerial, Brand: r.Brand, Model: r.Model,
				Port: name, Source: SourceDevice, ReadAt: now(),
			}, nil
		}
		last = err
		if partial == nil && errors.Is(err, errPartial) {
			// The rest of a slow answer pollutes the next tries; the
			// first diagnosis is the true one.
			partial = err
		}
		log.Debug("echo failed", "port", name, "try", try, "err", err)
		if ctx.Err() != nil || errors.Is(err, ErrDisconnected) || errors.Is(err, ErrEchoed) {
			break // no use asking again
		}
	}
	if partial != nil {
		last = partial
	}
	if tries > 1 {
		return Identity{}, fmt.Errorf("probe %s: %d tries: %w", name, tries, last)
	}
	return Identity{}, fmt.Errorf("probe %s: %w", name, last)
}

// exchange sends one ECHO and waits up to timeout for its answer.
func exchange(ctx context.Context, p port, timeout time.Duration, now func() time.Time) (gmp3.Response, error) {
	_ = p.ResetInputBuffer() // drop what came before us; best effort
	seq := nextSequence()
	req := gmp3.EchoRequest(seq, now())
	if _, err := p.Write(req); err != nil {
		return gmp3.Response{}, fmt.Errorf("send echo: %w", readError(err))
	}
	deadline := time.Now().Add(timeout)
	var sp gmp3.Splitter
	var frameErr error
	total := 0
	buf := make([]byte, 256)
	for total < maxBytesPerTry {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return gmp3.Response{}, fmt.Errorf("wait for echo: %w", err)
		}
		// At least 1 ms: a zero timeout means "return at once" on Unix but
		// is not well defined for Windows COMMTIMEOUTS.
		if err := p.SetReadTimeout(max(min(left, readSlice), time.Millisecond)); err != nil {
			return gmp3.Response{}, fmt.Errorf("set read timeout: %w", readError(err))
		}
		n, err := p.Read(buf)
		if err != nil {
			return gmp3.Response{}, fmt.Errorf("read echo after %d bytes: %w", total, readError(err))
		}
		total += n
		sp.Feed(buf[:n])
		for c := sp.Next(); c != nil; c = sp.Next() {
			r, err := gmp3.ParseEchoResponse(c, seq)
			switch {
			case err == nil:
				return r, nil
			case errors.Is(err, gmp3.ErrResultCode):
				return gmp3.Response{}, err
			case errors.Is(err, ErrEchoed), errors.Is(err, ErrWrongSequence):
				sp.Advance(len(c)) // a whole frame, just not our answer
			default:
				sp.Skip()
			}
			frameErr = err
		}
	}
	switch {
	case frameErr != nil:
		return gmp3.Response{}, frameErr
	case sp.Dropped > 0 && sp.DroppedZeros == sp.Dropped:
		return gmp3.Response{}, fmt.Errorf("%d bytes, no frame: %w", total, ErrZeroFlood)
	case sp.Dropped > 0:
		return gmp3.Response{}, fmt.Errorf("%d bytes (%d zero), no frame: %w", total, sp.DroppedZeros, ErrGarbage)
	case sp.Buffered() > 0:
		return gmp3.Response{}, fmt.Errorf("%d bytes after %v: %w", sp.Buffered(), timeout, errPartial)
	default:
		return gmp3.Response{}, fmt.Errorf("silent for %v: %w", timeout, ErrTimeout)
	}
}

// openError maps an open failure to a sentinel, keeping the cause's text.
func openError(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortBusy:
			return fmt.Errorf("open: %w", ErrBusy)
		case serial.PermissionDenied:
			return fmt.Errorf("open: %w", ErrPermission)
		case serial.PortNotFound:
			return fmt.Errorf("open: %w", ErrNoDevice)
		case serial.InvalidSerialPort:
			return fmt.Errorf("open: not a usable serial port (%v): %w", pe, ErrNoDevice)
		}
		return fmt.Errorf("open: %w", pe)
	}
	switch {
	case errors.Is(err, syscall.EBUSY):
		return fmt.Errorf("open: %w", ErrBusy)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("open: %w", ErrPermission)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.EIO):
		return fmt.Errorf("open: %v: %w", err, ErrNoDevice)
	}
	return fmt.Errorf("open: %w", err)
}

// readError maps an I/O failure on an open port.
func readError(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
		return ErrDisconnected
	}
	if errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENXIO) || errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("%v: %w", err, ErrDisconnected)
	}
	return fmt.Errorf("%w: %w", err, ErrDisconnected)
}
