package devicetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/gmp3"
)

// maxRecorded bounds what the device remembers of the bytes it received.
const maxRecorded = 1 << 20

// stream is one side of the line: a pty master or a TCP connection.
type stream interface {
	io.ReadWriter
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Sim is a running simulated device. Its methods are safe for concurrent use.
type Sim struct {
	opts  Options
	port  string
	fault atomic.Int32
	stop  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup
	// hangUp is how the transport ends the line for good.
	hangUp func()
	// closeLine releases the transport on Close.
	closeLine func()
	hungUp    atomic.Bool
	// send writes bytes into the line from the device's side.
	send func([]byte) error

	mu         sync.Mutex
	serial     string
	received   []byte
	types      []uint32
	requests   int
	mismatches []string
	replayDone bool
	replayPos  int // the next event to play: a replay over TCP goes on on the next connection
	sessions   []Session
}

// Session is one TCP connection of the agent to the device, as the device
// saw it: Closed is when the device noticed the end (within about 20 ms
// of the agent's close); zero while it lasts.
type Session struct {
	Opened, Closed time.Time
}

// Sessions lists the TCP connections so far (none on a pty).
func (s *Sim) Sessions() []Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Session(nil), s.sessions...)
}

// Send writes b into the line from the device's side, unasked: bytes
// waiting in the line for whoever reads the port (on a pty they sit in
// the port's input queue until a program reads or flushes them).
func (s *Sim) Send(b []byte) error {
	if s.send == nil {
		return errors.New("devicetest: no line to send on")
	}
	return s.send(b)
}

// Start starts a simulated device on opts.Transport.
func Start(opts Options) (*Sim, error) {
	opts.defaults()
	s := &Sim{opts: opts, serial: opts.FiscalSerial, stop: make(chan struct{})}
	s.fault.Store(int32(opts.Fault))
	var err error
	switch opts.Transport {
	case PTY:
		err = s.startPTY()
	case TCP:
		err = s.startTCP()
	default:
		err = fmt.Errorf("devicetest: unknown transport %q", opts.Transport)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// StartAny starts the device on opts.Transport; when that is empty or PTY,
// on a pseudo-terminal where there are some, else on TCP (Windows).
func StartAny(opts Options) (*Sim, error) {
	if opts.Transport == TCP {
		return Start(opts)
	}
	opts.Transport = PTY
	s, err := Start(opts)
	if errors.Is(err, ErrUnsupported) {
		opts.Transport = TCP
		return Start(opts)
	}
	return s, err
}

func (s *Sim) startTCP() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("devicetest: listen: %w", err)
	}
	s.port = "tcp://" + ln.Addr().String()
	var cmu sync.Mutex
	var cur net.Conn
	s.hangUp = func() {
		ln.Close()
		cmu.Lock()
		if cur != nil {
			cur.Close()
		}
		cmu.Unlock()
	}
	s.closeLine = s.hangUp
	s.send = func(b []byte) error {
		cmu.Lock()
		c := cur
		cmu.Unlock()
		if c == nil {
			return errors.New("devicetest: no connection")
		}
		_, err := c.Write(b)
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			cmu.Lock()
			cur = c
			cmu.Unlock()
			s.mu.Lock()
			s.sessions = append(s.sessions, Session{Opened: time.Now()})
			s.mu.Unlock()
			// One client at a time, like a device on one socket.
			s.serve(c)
			c.Close()
			s.mu.Lock()
			s.sessions[len(s.sessions)-1].Closed = time.Now()
			s.mu.Unlock()
			if s.stopped() || s.hungUp.Load() {
				return
			}
		}
	}()
	return nil
}

// Port is what the agent opens: /dev/pts/N or tcp://127.0.0.1:N.
func (s *Sim) Port() string { return s.port }

// SetFault changes how the device answers from the next request on.
func (s *Sim) SetFault(f Fault) { s.fault.Store(int32(f)) }

// SetFiscalSerial changes the fiscal id the device answers with, as if the
// cash register had been swapped on the same port.
func (s *Sim) SetFiscalSerial(serial string) {
	s.mu.Lock()
	s.serial = serial
	s.mu.Unlock()
}

// Requests is the number of ECHO requests the device has received (a
// repeat counts again).
func (s *Sim) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Received is a copy of every byte the device received (the first MiB).
func (s *Sim) Received() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.received)
}

// Types lists the message type of every well-formed frame received.
func (s *Sim) Types() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint32(nil), s.types...)
}

// ReplayResult says whether the replay is over and lists where the agent's
// bytes differed from the trace's "tx" events.
func (s *Sim) ReplayResult() (done bool, mismatches []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replayDone, append([]string(nil), s.mismatches...)
}

// Close stops the device and releases its port. It waits for its
// goroutines.
func (s *Sim) Close() error {
	s.once.Do(func() {
		close(s.stop)
		s.closeLine()
		s.wg.Wait()
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

func (s *Sim) record(b []byte) {
	s.mu.Lock()
	if n := min(len(b), maxRecorded-len(s.received)); n > 0 {
		s.received = append(s.received, b[:n]...)
	}
	s.mu.Unlock()
}

// serve runs the device on one stream until Close, a hang-up or the
// stream's end.
func (s *Sim) serve(st stream) {
	if len(s.opts.Replay) > 0 {
		s.replay(st)
		return
	}
	d := &dev{s: s, st: st, sc: gmp3.Scanner{Dialect: s.opts.Dialect}, rng: rand.New(rand.NewPCG(1, 2))}
	d.run()
}

// dev is the device's state on one stream.
type dev struct {
	s         *Sim
	st        stream
	sc        gmp3.Scanner
	rng       *rand.Rand
	lastByte  time.Time
	lastReply []byte // resent after a NAK
	resends   int
	naked     string // FaultNAKFirst: the request last NAKed
}

func (d *dev) run() {
	buf := make([]byte, 512)
	for !d.s.stopped() && !d.s.hungUp.Load() {
		if Fault(d.s.fault.Load()) == FaultDeaf {
			// Read nothing: the line backs up until the fault changes.
			if !d.s.sleep(20 * time.Millisecond) {
				return
			}
			continue
		}
		_ = d.st.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, err := d.st.Read(buf)
		if n > 0 {
			d.s.record(buf[:n])
			d.lastByte = time.Now()
			d.linkBytes(buf[:n])
			for p := buf[:n]; len(p) > 0; {
				k := d.sc.Feed(p)
				p = p[k:]
				if !d.frames() {
					break
				}
			}
		} else if d.sc.Buffered() > 0 && time.Since(d.lastByte) > d.s.opts.InterByte {
			// Half a frame and the line went quiet: refuse it.
			d.sc.Reset()
			if f := Fault(d.s.fault.Load()); f != FaultSilent && f != FaultDeaf {
				d.write([]byte{gmp3.NAK})
			}
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return // the line is gone
			}
		}
	}
}

// linkBytes handles ACK and NAK from the agent (bytes before any frame).
func (d *dev) linkBytes(b []byte) {
	if d.sc.Buffered() > 0 {
		return
	}
	for _, c := range b {
		switch c {
		case gmp3.ACK:
			d.lastReply = nil
		case gmp3.NAK:
			if d.lastReply != nil && d.resends < 3 {
				d.resends++
				d.write(d.lastReply)
			}
		case gmp3.STX:
			return
		}
	}
}

// frames handles every complete frame buffered; false when the rest of the
// input was dropped.
func (d *dev) frames() bool {
	for {
		f, err := d.sc.Next()
		if errors.Is(err, gmp3.ErrNeedMore) {
			return true
		}
		if err != nil {
			// Not a frame of our dialect: refuse it and forget the rest,
			// as a device clears its input after an error. A line that
			// misbehaves misbehaves whatever it is sent.
			d.s.opts.Logger.Debug("devicetest: bad frame", "err", err)
			d.sc.Reset()
			switch fault := Fault(d.s.fault.Load()); fault {
			case FaultSilent, FaultDeaf:
			case FaultGarbage, FaultZeroFlood:
				d.answer(gmp3.Frame{}, gmp3.Request{})
			default:
				d.write([]byte{gmp3.NAK})
			}
			return false
		}
		d.s.mu.Lock()
		if len(d.s.types) < 10000 {
			d.s.types = append(d.s.types, f.Type)
		}
		d.s.mu.Unlock()
		req, err := gmp3.ParseEchoRequest(f)
		if err != nil {
			// Anything else is not for a read-only client to send; a real
			// device might act on it. Recorded, not answered.
			d.s.opts.Logger.Warn("devicetest: frame that is not an echo request", "type", fmt.Sprintf("%06X", f.Type), "err", err)
			continue
		}
		d.s.mu.Lock()
		d.s.requests++
		d.s.mu.Unlock()
		d.answer(f, req)
		if d.s.hungUp.Load() {
			return false
		}
	}
}

func (d *dev) answer(f gmp3.Frame, req gmp3.Request) {
	fault := Fault(d.s.fault.Load())
	d.s.opts.Logger.Debug("devicetest: echo request", "sequence", req.Sequence, "id", req.ID, "fault", fault.String())
	dl := d.s.opts.Dialect
	d.s.mu.Lock()
	own, _ := gmp3.HeaderID(dl, d.s.serial)
	d.s.mu.Unlock()
	reply := func(seq int, result string) []byte {
		b, err := d.encodeReply(own, seq, result)
		if err != nil {
			d.s.opts.Logger.Error("devicetest: encode answer", "err", err)
		}
		return b
	}
	d.resends = 0
	d.lastReply = nil
	switch fault {
	case FaultSilent, FaultDeaf:
	case FaultNone:
		d.ackAndSend(reply(req.Sequence, ""))
	case FaultNoACK:
		d.send(reply(req.Sequence, ""))
	case FaultGarbage:
		g := make([]byte, 300)
		for i := range g {
			g[i] = byte(d.rng.UintN(256))
			if g[i] == gmp3.ACK || g[i] == gmp3.STX {
				g[i] = 0x55 // a garbage line, not a lucky one
			}
		}
		d.write(g)
	case FaultZeroFlood:
		zeros := make([]byte, 4096)
		for range 16 {
			if !d.write(zeros) {
				return
			}
		}
	case FaultEcho:
		if raw, err := gmp3.Encode(dl, f.ID, f.Type, f.Body); err == nil {
			d.write(raw)
		}
	case FaultBadChecksum:
		b := reply(req.Sequence, "")
		b[len(b)-2] ^= 0x5A
		d.ackAndSend(b)
	case FaultBadSequence:
		d.ackAndSend(reply(gmp3.NormSequence(req.Sequence+500), ""))
	case FaultNAKFirst:
		key := fmt.Sprintf("%s/%d", req.ID, req.Sequence)
		if d.naked != key {
			d.naked = key
			d.write([]byte{gmp3.NAK})
			return
		}
		d.ackAndSend(reply(req.Sequence, ""))
	case FaultNAKAll:
		d.write([]byte{gmp3.NAK})
	case FaultStrict:
		if req.ID != own {
			b, _ := d.encodeReply(req.ID, req.Sequence, gmp3.ResultUnregistered)
			d.ackAndSend(b)
			return
		}
		d.ackAndSend(reply(req.Sequence, ""))
	case FaultBusy:
		d.ackAndSend(reply(req.Sequence, gmp3.ResultBusy))
	case FaultSlow:
		// Byte i leaves at start + i·ByteDelay: with a coarse timer
		// (Windows) a few go together, the pace stays the same.
		b := append([]byte{gmp3.ACK}, reply(req.Sequence, "")...)
		start := time.Now()
		for i := 0; i < len(b); {
			n := max(1, int(time.Since(start)/d.s.opts.ByteDelay)+1-i)
			n = min(n, len(b)-i)
			if !d.write(b[i : i+n]) {
				return
			}
			i += n
			if i < len(b) && !d.s.sleep(time.Until(start.Add(time.Duration(i)*d.s.opts.ByteDelay))) {
				return
			}
		}
		d.lastReply = b[1:]
	case FaultHangUp:
		b := reply(req.Sequence, "")
		d.write(append([]byte{gmp3.ACK}, b[:len(b)/2]...))
		d.s.hungUp.Store(true)
		d.s.hangUp()
	}
}

// encodeReply builds an ECHO answer, shifted when the options say so.
func (d *dev) encodeReply(hid string, seq int, result string) ([]byte, error) {
	dl := d.s.opts.Dialect
	b, err := gmp3.EchoResponse(dl, hid, seq, result)
	if err != nil || !d.s.opts.Shifted {
		return b, err
	}
	// Insert 2 bytes before the id; len and check cover them.
	c := dl.CheckLen()
	inner := append([]byte{0x00, byte(len(b) - 4 - c)}, b[3:len(b)-1-c]...)
	out := []byte{gmp3.STX, byte(len(inner) >> 8), byte(len(inner))}
	out = append(out, inner...)
	switch dl {
	case gmp3.T300:
		out = append(out, gmp3.LRC(inner))
	case gmp3.CCITT:
		v := gmp3.CRC16CCITT(inner)
		out = append(out, byte(v>>8), byte(v))
	default:
		v := gmp3.CRC16ARC(inner)
		out = append(out, byte(v>>8), byte(v))
	}
	return append(out, gmp3.ETX), nil
}

func (d *dev) ackAndSend(b []byte) {
	if d.write([]byte{gmp3.ACK}) {
		d.send(b)
	}
}

func (d *dev) send(b []byte) {
	if b == nil {
		return
	}
	d.lastReply = b
	d.write(b)
}

// write sends b, giving up after a second (nobody reading) or on Close.
func (d *dev) write(b []byte) bool {
	_ = d.st.SetWriteDeadline(time.Now().Add(time.Second))
	_, err := d.st.Write(b)
	return err == nil && !d.s.stopped()
}

// sleep waits dur or until Close; false when closed.
func (s *Sim) sleep(dur time.Duration) bool {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stop:
		return false
	}
}

// replay plays the device's side of a trace.
func (s *Sim) replay(st stream) {
	again := false // the agent closed the connection between two events
	defer func() {
		s.mu.Lock()
		s.replayDone = s.replayDone || !again
		s.mu.Unlock()
	}()
	for ; s.replayPos < len(s.opts.Replay); s.replayPos++ {
		i, ev := s.replayPos, s.opts.Replay[s.replayPos]
		if s.stopped() {
			return
		}
		switch ev.Dir {
		case device.TraceRx: // the device sent this
			_ = st.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := st.Write(ev.Data); err != nil {
				s.mismatch("event %d: write: %v", i+1, err)
				return
			}
		case device.TraceTx: // the agent sent this: expect the same bytes
			got := make([]byte, 0, len(ev.Data))
			buf := make([]byte, len(ev.Data))
			deadline := time.Now().Add(10 * time.Second)
			for len(got) < len(ev.Data) && time.Now().Before(deadline) && !s.stopped() {
				_ = st.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				n, err := st.Read(buf[:len(ev.Data)-len(got)])
				got = append(got, buf[:n]...)
				s.record(buf[:n])
				if errors.Is(err, io.EOF) && len(got) == 0 && s.opts.Transport == TCP {
					again = true // the agent opens the port again for its next send
					return
				}
				if err != nil && !isTimeout(err) {
					s.mismatch("event %d: read: %v", i+1, err)
					return
				}
			}
			if !bytes.Equal(got, ev.Data) {
				s.mismatch("event %d: agent sent %x, trace has %x", i+1, got, ev.Data)
			}
			if f, err := gmp3.Decode(s.opts.Dialect, got); err == nil {
				s.mu.Lock()
				s.types = append(s.types, f.Type)
				if f.Type == gmp3.TypeEchoRequest {
					s.requests++
				}
				s.mu.Unlock()
			}
		}
	}
}

func (s *Sim) mismatch(format string, args ...any) {
	s.mu.Lock()
	s.mismatches = append(s.mismatches, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
