//go:build linux

package devicetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/creack/pty"
	"github.com/tposagent/tposagent/device/gmp3"
	"golang.org/x/sys/unix"
)

// Sim is a running simulated device. Its methods are safe for concurrent use.
type Sim struct {
	mu       sync.Mutex // guards opts.FiscalSerial
	opts     Options
	master   *os.File // the device's end
	slave    *os.File // held open so the pty survives the agent's closes
	port     string
	fault    atomic.Int32
	requests atomic.Int64
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	hungUp   atomic.Bool
}

// Start opens a pseudo-terminal pair and serves ECHO on it until Close.
func Start(opts Options) (*Sim, error) {
	opts.defaults()
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("devicetest: open pty: %w", err)
	}
	// pty.Open leaves the master in blocking mode; make it pollable so reads
	// and writes honour deadlines and Close interrupts them.
	master, err := pollable(m)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("devicetest: %w", err)
	}
	// A raw line discipline on the slave from the start: no echo, no CR/LF
	// translation, even before the agent opens it.
	if err := rawMode(s); err != nil {
		master.Close()
		s.Close()
		return nil, fmt.Errorf("devicetest: raw mode: %w", err)
	}
	sim := &Sim{opts: opts, master: master, slave: s, port: s.Name(), stop: make(chan struct{}), done: make(chan struct{})}
	sim.fault.Store(int32(opts.Fault))
	go sim.serve()
	return sim, nil
}

func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

func rawMode(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var terr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			terr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		terr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return terr
}

// Port is the path the agent opens, e.g. /dev/pts/3.
func (s *Sim) Port() string { return s.port }

// SetFault changes how the device answers from the next request on.
func (s *Sim) SetFault(f Fault) { s.fault.Store(int32(f)) }

// Requests is the number of ECHO requests the device has received.
func (s *Sim) Requests() int { return int(s.requests.Load()) }

// SetFiscalSerial changes the fiscal ID the device answers with, as if the
// cash register had been swapped on the same port.
func (s *Sim) SetFiscalSerial(serial string) {
	s.mu.Lock()
	s.opts.FiscalSerial = serial
	s.mu.Unlock()
}

// Close stops the device and removes the pseudo-terminal. It waits for the
// serving goroutine.
func (s *Sim) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.master.Close()
		<-s.done
		s.slave.Close()
	})
	return nil
}

func (s *Sim) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// serve reads requests and answers them until Close or a hang-up.
func (s *Sim) serve() {
	defer close(s.done)
	var sp gmp3.Splitter
	buf := make([]byte, 512)
	rng := rand.New(rand.NewPCG(1, 2))
	for !s.stopped() && !s.hungUp.Load() {
		_ = s.master.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := s.master.Read(buf)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			if !s.stopped() {
				// EIO while no one holds the slave cannot happen (we hold it);
				// anything else ends the device.
				s.opts.Logger.Debug("devicetest: read", "err", err)
			}
			return
		}
		sp.Feed(buf[:n])
		for c := sp.Next(); c != nil; c = sp.Next() {
			req, err := gmp3.ParseEchoRequest(c)
			if err != nil {
				sp.Skip()
				continue
			}
			raw := append([]byte(nil), c...)
			sp.Advance(len(c))
			s.requests.Add(1)
			f := Fault(s.fault.Load())
			s.opts.Logger.Debug("devicetest: echo request", "sequence", req.Sequence, "fault", f.String())
			s.answer(f, req, raw, rng)
			if s.hungUp.Load() {
				return
			}
		}
	}
}

func (s *Sim) answer(f Fault, req gmp3.Request, raw []byte, rng *rand.Rand) {
	if s.opts.AnswerDelay > 0 && !s.sleep(s.opts.AnswerDelay) {
		return
	}
	s.mu.Lock()
	serial := s.opts.FiscalSerial
	s.mu.Unlock()
	resp := gmp3.Response{FiscalSerial: serial, Sequence: req.Sequence, Brand: s.opts.Brand, Model: s.opts.Model, ECRSerial: s.opts.ECRSerial}
	good, err := gmp3.EncodeEchoResponse(resp)
	if err != nil {
		s.opts.Logger.Error("devicetest: encode answer", "err", err)
		return
	}
	switch f {
	case FaultNone:
		s.write(good)
	case FaultSilent:
	case FaultSlow:
		for i := range good {
			if !s.write(good[i:i+1]) || !s.sleep(s.opts.ByteDelay) {
				return
			}
		}
	case FaultGarbage:
		g := make([]byte, 300)
		for i := range g {
			g[i] = byte(rng.UintN(256))
		}
		s.write(g)
	case FaultEcho:
		s.write(raw)
	case FaultZeroFlood:
		zeros := make([]byte, 4096)
		for range 16 {
			if !s.write(zeros) {
				return
			}
		}
	case FaultBadLRC:
		good[len(good)-1] ^= 0x5A
		s.write(good)
	case FaultWrongSequence:
		resp.Sequence = gmp3.NormSequence(req.Sequence + 500)
		if b, err := gmp3.EncodeEchoResponse(resp); err == nil {
			s.write(b)
		}
	case FaultHangUp:
		s.write(good[:len(good)/2])
		s.hungUp.Store(true)
		// Closing every handle of the pair hangs up the agent's open port.
		s.master.Close()
		s.slave.Close()
	}
}

// write sends b, giving up after a second (nobody reading) or on Close.
func (s *Sim) write(b []byte) bool {
	_ = s.master.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := s.master.Write(b)
	return err == nil && !s.stopped()
}

// sleep waits d or until Close; false when closed.
func (s *Sim) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}
