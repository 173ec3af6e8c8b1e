//go:build !linux

package device

import (
	"errors"
	"fmt"
	"time"

	"go.bug.st/serial"
)

// serialPort adapts go.bug.st/serial. Its Unix read honours the timeout and
// is woken by Close; its Unix write blocks while the line is flow-stopped;
// on Windows neither is bounded by the library (the write has no timeout,
// the overlapped read waits on GetOverlappedResult), hence the watcher.
type serialPort struct {
	p serial.Port
}

func openSerialPort(name string, baud int) (*serialPort, error) {
	p, err := serial.Open(name, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, err
	}
	return &serialPort{p: p}, nil
}

func (s *serialPort) readTimeout(b []byte, d time.Duration) (int, error) {
	if err := s.p.SetReadTimeout(d); err != nil {
		return 0, readError(err)
	}
	start := time.Now()
	n, err := s.p.Read(b)
	if err != nil {
		return n, readError(err)
	}
	if n == 0 && time.Since(start) < d/2 && d >= 20*time.Millisecond {
		// The library returns (0, nil) at its timeout; long before it, an
		// empty read is a hang-up (the device end of the line is gone).
		return 0, fmt.Errorf("empty read before the timeout: %w", ErrDisconnected)
	}
	return n, nil
}

func (s *serialPort) writeTimeout(b []byte, _ time.Duration) (int, error) {
	n, err := s.p.Write(b)
	if err != nil {
		return n, readError(err)
	}
	return n, nil
}

func (s *serialPort) resetInput() []byte {
	_ = s.p.ResetInputBuffer()
	return nil
}

func (s *serialPort) abort() {
	cancelIO(s.p)
	_ = s.p.Close()
}

func (s *serialPort) Close() error { return s.p.Close() }

// readError maps an I/O failure on an open port.
func readError(err error) error {
	var pe *serial.PortError
	if errors.As(err, &pe) && pe.Code() == serial.PortClosed {
		return fmt.Errorf("port closed: %w", ErrDisconnected)
	}
	return fmt.Errorf("%v: %w", err, ErrDisconnected)
}
