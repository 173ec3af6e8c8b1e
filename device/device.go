// Package device reads what the till registration needs from the hardware:
// the fiscal identity of the cash register (ÖKC) with the read-only GMP-3
// ECHO exchange over a serial port or TCP, and facts of the host PC.
//
// The agent never pairs with the device (never writes INIT, KEY_EX or a
// fiscal command), and never keeps the port open: a read opens the port,
// sends ECHO, waits for the ACK and the answer with deadlines, and closes
// it. Every read and write on the port ends by its deadline on every OS: a
// call the driver does not return from is abandoned by closing the port
// under it (see Stuck).
//
// What is known and what is inferred: the framing, the checksums, the ACK
// and NAK rules and the tags come from public vendor code. That the 12-byte
// id in the header of an ECHO response is the device's own fiscal id is an
// inference no public source proves; it is accepted only with result "00",
// the echoed sequence and a fiscal-id shape.
//
// The agent is a guest on the POS's line to its ÖKC. One open of a port
// (serial or TCP) lasts at most Config.HoldMax; two opens of one port are at
// least Config.ReopenGap apart, so a probe's tries spread over several
// opens inside Config.ProbeBudget. On Linux a serial port is opened without
// being configured and left alone when another program holds any of the
// three lock conventions (exclusive mode, flock, UUCP lock file); while the
// Reader holds a port it holds all three itself (see serial_linux.go). On
// Windows a COM port is exclusive: another holder makes the open fail at
// once. Either way the answer is ErrBusy, at once.
//
// Port "auto" asks a known port — the one the POS reported (ReadVia), else
// the one that answered last — with every dialect and try, and scans only
// when none is known or the known one is gone: the listed USB serial ports
// (Config.Scan "usb", the default) or every listed port ("all"),
// Config.Exclude skipped, with one frame per dialect on a silent port. The
// dialect that answered is remembered with its port. Every port touched is
// logged (info) with the bytes sent.
//
// It imports nothing of the agent or the outbox; the agent decides what
// an identity is used for.
package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tposagent/tposagent/device/gmp3"
)

// Source says where an identity came from.
type Source string

// Sources of an identity, in the order registration prefers them.
const (
	SourceConfig Source = "config" // device.fiscal_serial from the configuration
	SourceDevice Source = "device" // read from the device just now
	SourcePOS    Source = "pos"    // reported by the paired POS program
	SourceCache  Source = "cache"  // the last identity read, remembered on disk
)

// Identity is the fiscal identity of the till's ÖKC. The device itself
// gives only the fiscal id (ECHO carries no brand, model or ECR serial);
// the other fields come from the POS report or the configuration.
type Identity struct {
	FiscalSerial string    `json:"fiscal_serial"` // e.g. JI20012345
	ECRSerial    string    `json:"ecr_serial,omitempty"`
	Brand        string    `json:"brand,omitempty"`
	Model        string    `json:"model,omitempty"`
	Port         string    `json:"port,omitempty"`
	Protocol     string    `json:"protocol,omitempty"` // the dialect that answered
	Source       Source    `json:"source"`
	ReadAt       time.Time `json:"read_at"` // when the device answered (or the POS reported)
}

// Age is how old the identity is at now.
func (id Identity) Age(now time.Time) time.Duration {
	if id.ReadAt.IsZero() {
		return 0
	}
	return now.Sub(id.ReadAt)
}

// Errors of a device read; match them with errors.Is. Frame errors (the
// device or something else answered, but not with a valid ECHO response)
// all match ErrBadFrame; a refusal by the device matches ErrResultCode.
var (
	// ErrBusy: the port is held by another program, most likely the POS.
	ErrBusy = errors.New("port busy (held by another program)")
	// ErrPermission: the user may not open the port (on Linux: not in the
	// group owning it, see PortGroup).
	ErrPermission = errors.New("permission denied")
	// ErrNoDevice: no such port, not a serial port, nothing listening on
	// the TCP address, or (auto) no port answered like a fiscal device.
	ErrNoDevice = errors.New("no fiscal device")
	// ErrNoPort: device.port is "none"; nothing is read.
	ErrNoPort = errors.New(`device.port is "none"`)
	// ErrTimeout: the device did not answer, or not completely, in time.
	ErrTimeout = errors.New("no answer in time")
	// ErrNAK: the device refused every frame we sent (NAK).
	ErrNAK = errors.New("device refused the frame (nak)")
	// ErrDisconnected: the port went away during the exchange (unplugged).
	ErrDisconnected = errors.New("port disconnected")
	// ErrStalled: the port driver did not return a read or write by its
	// deadline; the port was closed under it.
	ErrStalled = errors.New("port driver stalled")

	ErrBadFrame      = gmp3.ErrBadFrame      // any invalid answer
	ErrChecksum      = gmp3.ErrChecksum      // checksum mismatch
	ErrWrongSequence = gmp3.ErrWrongSequence // an answer to another request
	ErrWrongType     = gmp3.ErrWrongType     // not an ECHO response
	ErrEchoed        = gmp3.ErrEchoed        // our own request came back
	ErrBadID         = gmp3.ErrBadID         // the header id has no fiscal-id shape
	ErrResultCode    = gmp3.ErrResultCode    // the device refused (result code not "00")
	ErrUnregistered  = gmp3.ErrUnregistered  // result 03: the device does not know the header id
	ErrDeviceBusy    = gmp3.ErrDeviceBusy    // result 91
	// ErrGarbage: bytes arrived but none formed a frame.
	ErrGarbage error = &noiseError{"garbage instead of a frame"}
	// ErrZeroFlood: only 0x00 bytes arrived.
	ErrZeroFlood error = &noiseError{"flood of zero bytes"}
)

type noiseError struct{ msg string }

func (e *noiseError) Error() string        { return e.msg }
func (e *noiseError) Is(target error) bool { return target == ErrBadFrame }

// Defaults of Config.
const (
	DefaultBaud        = 115200
	DefaultAckTimeout  = 1500 * time.Millisecond // a live ÖKC ACKs an ECHO within milliseconds
	DefaultTries       = 3                       // Hugin's MAX_TRY_COUNT
	DefaultProbeBudget = 45 * time.Second
	DefaultHoldMax     = 2 * time.Second // one open of a port
	DefaultReopenGap   = 5 * time.Second // between two opens of one port
)

// Values of Config.Scan.
const (
	ScanUSB = "usb" // auto scans USB serial ports only (the default)
	ScanAll = "all" // auto scans every listed port, built-in UARTs too
)

// Port and protocol values with a meaning of their own.
const (
	PortAuto     = "auto"
	PortNone     = "none"
	ProtocolAuto = "auto"
)

// Config configures a Reader. The zero value reads port "auto" with
// protocol "auto", 115200 baud 8N1, a 1.5 s ACK wait and 3 tries per
// dialect, opens of at most 2 s at least 5 s apart, within 45 s, scanning
// USB serial ports only, without a cache.
type Config struct {
	Port        string        // "auto" (default), "none", a serial port (COM3, /dev/ttyUSB0) or "tcp://host:port"
	Protocol    string        // "auto" (default), "crc16-arc", "crc16-ccitt", "t300"
	Baud        int           // default 115200
	AckTimeout  time.Duration // wait for ACK, and then for the whole answer; default 4.5 s
	Tries       int           // sends per dialect; default 3
	ProbeBudget time.Duration // a whole Read, all ports and dialects; default 45 s
	HoldMax     time.Duration // one open of a port lasts at most this; default 2 s
	ReopenGap   time.Duration // at least this from closing a port to opening it again; default 5 s
	Scan        string        // which listed ports auto may scan: "usb" (default) or "all"
	Exclude     []string      // ports auto never probes
	CacheDir    string        // where the last identity, the auto port and the dialects are remembered; "" = nowhere
	Logger      *slog.Logger  // nil: discard

	// Trace, when set, receives every byte sent and received (see
	// ReadTrace for the format).
	Trace io.Writer
	// ListPorts replaces Ports for "auto"; nil uses Ports.
	ListPorts func() ([]PortInfo, error)
	// Now replaces time.Now for the request's date and time and the read
	// time; nil uses time.Now.
	Now func() time.Time
	// Sequence gives the sequence number of each read's request; nil
	// numbers them 1, 2, … for the process.
	Sequence func() int
}

// ErrBadConfig is returned by NewReader for an invalid Config.
var ErrBadConfig = errors.New("bad device config")

// Reader reads the identity as Config says. Its methods are safe for
// concurrent use; reads are serialised (one port open at a time).
type Reader struct {
	cfg      Config
	dialects []gmp3.Dialect // nil: auto
	log      *slog.Logger
	mu       sync.Mutex
	tr       *tracer
	closed   map[string]time.Time // port key → when it was last closed (mu)
}

// sequence numbers the ECHO requests of this process (1…999999, wrapping),
// so a late answer to an earlier request is never taken for the current one.
var sequence atomic.Int64

// NewReader returns a Reader with cfg's defaults filled in.
func NewReader(cfg Config) (*Reader, error) {
	cfg.Port = strings.TrimSpace(cfg.Port)
	switch strings.ToLower(cfg.Port) {
	case "", PortAuto:
		cfg.Port = PortAuto
	case PortNone:
		cfg.Port = PortNone
	}
	if addr, ok := strings.CutPrefix(cfg.Port, TCPPrefix); ok && !strings.Contains(addr, ":") {
		return nil, fmt.Errorf("device port %q: want tcp://host:port: %w", cfg.Port, ErrBadConfig)
	}
	r := &Reader{}
	if p := strings.TrimSpace(cfg.Protocol); p != "" && !strings.EqualFold(p, ProtocolAuto) {
		d, err := gmp3.ParseDialect(p)
		if err != nil {
			return nil, fmt.Errorf("device protocol: %w: %w", err, ErrBadConfig)
		}
		r.dialects = []gmp3.Dialect{d}
	}
	if cfg.Baud <= 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Tries <= 0 {
		cfg.Tries = DefaultTries
	}
	if cfg.ProbeBudget <= 0 {
		cfg.ProbeBudget = DefaultProbeBudget
	}
	if cfg.HoldMax <= 0 {
		cfg.HoldMax = DefaultHoldMax
	}
	if cfg.ReopenGap <= 0 {
		cfg.ReopenGap = DefaultReopenGap
	}
	switch cfg.Scan = strings.ToLower(strings.TrimSpace(cfg.Scan)); cfg.Scan {
	case "":
		cfg.Scan = ScanUSB
	case ScanUSB, ScanAll:
	default:
		return nil, fmt.Errorf("device scan %q: want %q or %q: %w", cfg.Scan, ScanUSB, ScanAll, ErrBadConfig)
	}
	if cfg.ListPorts == nil {
		cfg.ListPorts = Ports
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sequence == nil {
		cfg.Sequence = func() int { return gmp3.NormSequence(int(sequence.Add(1))) }
	}
	r.log = cfg.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Trace != nil {
		r.tr = newTracer(cfg.Trace)
	}
	r.cfg = cfg
	r.closed = map[string]time.Time{}
	return r, nil
}

// Port is the configured port ("auto", "none", a name or tcp://…).
func (r *Reader) Port() string { return r.cfg.Port }

// Read asks the device for its fiscal id now. known is the best fiscal id
// already known (config, POS report, cache), sent in the request header
// because some devices refuse an id that is not theirs; "" sends twelve
// '0'. The result has Source device. Errors match the sentinels of this
// package (ErrBusy, ErrNoDevice, ErrTimeout, ErrNAK, ErrBadFrame …,
// ErrResultCode, ErrNoPort) or the context's error.
func (r *Reader) Read(ctx context.Context, known string) (Identity, error) {
	return r.ReadVia(ctx, known, "")
}

// ReadVia is Read with a port to ask when the configured port is "auto":
// where the POS says it talks to its ÖKC (PUT /v1/device "port"). It is
// asked instead of the remembered port, and auto scans only when it is
// gone. A configured port always wins; "" is Read.
func (r *Reader) ReadVia(ctx context.Context, known, via string) (Identity, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cfg.Port == PortNone {
		return Identity{}, fmt.Errorf("read device: %w", ErrNoPort)
	}
	if known != "" && !gmp3.ValidFiscalID(known) {
		r.log.Warn("ignoring a known fiscal id without a fiscal-id shape for the request header", "fiscal_serial", known)
		known = ""
	}
	bctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeBudget)
	defer cancel()
	c := r.loadCache()
	var id Identity
	var err error
	if r.cfg.Port == PortAuto {
		id, err = r.auto(bctx, c, known, strings.TrimSpace(via))
	} else {
		id, err = r.probe(bctx, r.cfg.Port, r.order(c.Dialects[r.cfg.Port], known), r.cfg.Tries, known)
	}
	if err != nil {
		if ctx.Err() == nil && bctx.Err() != nil {
			err = fmt.Errorf("%w (probe budget of %v spent): %w", err, r.cfg.ProbeBudget, ErrTimeout)
		}
		return Identity{}, fmt.Errorf("read device: %w", err)
	}
	if werr := r.saveCache(c, id, r.cfg.Port == PortAuto); werr != nil {
		r.log.Warn("cannot remember the device identity", "err", werr)
	}
	return id, nil
}

// order is the dialects to try: the configured one; else the remembered
// one first, then ARC, CCITT, T300 (T300 first for a known FT… id).
func (r *Reader) order(remembered, known string) []gmp3.Dialect {
	if r.dialects != nil {
		return r.dialects
	}
	out := make([]gmp3.Dialect, 0, 3)
	if d, err := gmp3.ParseDialect(remembered); err == nil {
		out = append(out, d)
	}
	if strings.HasPrefix(known, "FT") {
		out = append(out, gmp3.T300)
	}
	for _, d := range gmp3.Dialects() {
		dup := false
		for _, o := range out {
			dup = dup || o == d
		}
		if !dup {
			out = append(out, d)
		}
	}
	return out
}

// auto asks the known port — via (the POS's report), else the remembered
// winner — with every try, and stops there unless the port is gone (no
// such port any more): a silent or busy known port is not a reason to
// write into other ports. Without a known port it scans the listed ports
// that Config.Scan allows, one frame per dialect on each — unless
// something on it answers a GMP-3 frame (a NAK, an ACK, a frame): that
// dialect then gets all its tries, as on a configured port.
func (r *Reader) auto(ctx context.Context, c cacheData, known, via string) (Identity, error) {
	knownPort, from := via, "the POS's report"
	if knownPort == "" {
		knownPort, from = c.AutoPort, "the port that answered last"
	}
	if knownPort != "" && !r.excluded(knownPort) {
		id, err := r.probe(ctx, knownPort, r.order(c.Dialects[knownPort], known), r.cfg.Tries, known)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, ErrNoDevice) || ctx.Err() != nil {
			return Identity{}, fmt.Errorf("auto-detect device: %s (%s): %w", knownPort, from, err)
		}
		r.log.Info("the known port of the device is gone; scanning", "port", knownPort, "from", from, "err", err)
	}
	list, lerr := r.cfg.ListPorts()
	if lerr != nil {
		r.log.Warn("cannot list serial ports", "err", lerr)
	}
	var names []string
	seen := map[string]bool{portKey(knownPort): knownPort != ""}
	skipped := 0
	for _, p := range list {
		key := portKey(p.Name)
		if p.Name == "" || seen[key] || r.excluded(p.Name) {
			continue
		}
		seen[key] = true
		if r.cfg.Scan != ScanAll && !IsUSBSerial(p) {
			skipped++
			r.log.Debug(`port not scanned: not a USB serial port (device.scan = "all" or device.port names it)`, "port", p.Name)
			continue
		}
		names = append(names, p.Name)
	}
	if len(names) == 0 {
		if lerr != nil {
			return Identity{}, fmt.Errorf("auto-detect device: list ports: %w: %w", lerr, ErrNoDevice)
		}
		if skipped > 0 {
			return Identity{}, fmt.Errorf(`auto-detect device: no USB serial port (%d other port(s) not scanned: set device.port, or device.scan = "all"): %w`, skipped, ErrNoDevice)
		}
		return Identity{}, fmt.Errorf("auto-detect device: no serial ports: %w", ErrNoDevice)
	}
	var busy, last error
	for _, name := range names {
		id, err := r.probe(ctx, name, r.order(c.Dialects[name], known), scanTries, known)
		if err == nil {
			r.log.Info("fiscal device found", "port", name, "fiscal_serial", id.FiscalSerial, "protocol", id.Protocol)
			return id, nil
		}
		if ctx.Err() != nil {
			return Identity{}, fmt.Errorf("auto-detect device: %w (last: %v)", ctx.Err(), err)
		}
		r.log.Debug("no fiscal device on port", "port", name, "err", err)
		last = err
		if errors.Is(err, ErrBusy) && busy == nil {
			busy = err
		}
	}
	if busy != nil {
		// The device is most likely behind the port the POS program holds.
		return Identity{}, fmt.Errorf("auto-detect device: no answer on %d port(s), one busy: %w", len(names), busy)
	}
	return Identity{}, fmt.Errorf("auto-detect device: no fiscal device answered on %d port(s) (last: %v): %w", len(names), last, ErrNoDevice)
}

// IsUSBSerial reports whether p is a USB serial port, the only kind
// device.scan = "usb" scans: the enumerator says USB (on Windows a COM port
// with a USB VID/PID), or its Linux name is ttyUSB* or ttyACM*. Built-in
// UARTs (ttyS*, a plain COM1) are where receipt printers and pole displays
// live.
func IsUSBSerial(p PortInfo) bool {
	if p.IsUSB || p.VID != "" {
		return true
	}
	base := p.Name
	if i := strings.LastIndexAny(base, `/\`); i >= 0 {
		base = base[i+1:]
	}
	return strings.HasPrefix(base, "ttyUSB") || strings.HasPrefix(base, "ttyACM")
}

func (r *Reader) excluded(name string) bool {
	for _, x := range r.cfg.Exclude {
		if portKey(x) == portKey(name) {
			return true
		}
	}
	return false
}

// scanTries marks a port probed while scanning (auto): one try per
// dialect, all of them once the port answers as a GMP-3 device.
const scanTries = 0

// session is one open of a port: it ends by hold.
type session struct {
	c      *conn
	opened time.Time
	hold   time.Time // the open ends by then (HoldMax)
	sends  int
}

// usage is what one probe did to one port, for the log.
type usage struct {
	opens      int
	sent, recv int
	longest    time.Duration
}

// open opens name once the gap since its last close has passed; the open
// lasts until HoldMax after it began.
func (r *Reader) open(ctx context.Context, name string) (*session, error) {
	if last, ok := r.closed[portKey(name)]; ok {
		if wait := r.cfg.ReopenGap - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("waiting %v to open the port again: %w", r.cfg.ReopenGap, ctx.Err())
			case <-t.C:
			}
		}
	}
	start := time.Now()
	c, err := dial(ctx, name, r.cfg.Baud, min(r.cfg.AckTimeout, r.cfg.HoldMax), r.tr)
	if err != nil {
		return nil, err
	}
	return &session{c: c, opened: start, hold: start.Add(r.cfg.HoldMax)}, nil
}

// close closes the session's port and starts its gap.
func (r *Reader) close(name string, s *session, u *usage) {
	s.c.Close()
	held := time.Since(s.opened)
	r.closed[portKey(name)] = time.Now()
	r.tr.comment("port %s closed after %.6f s", name, r.tr.since().Seconds())
	u.opens++
	u.sent += s.c.sent
	u.recv += s.c.recv
	u.longest = max(u.longest, held)
}

// probe asks one port ECHO in each dialect up to tries times (a scanned
// port: see scanTries). The sends spread over opens of at most HoldMax, a
// new send in an open only while a whole ACK wait still fits, each open at
// least ReopenGap after the last close of the port; a busy port ends the
// probe at once.
func (r *Reader) probe(ctx context.Context, name string, dialects []gmp3.Dialect, tries int, known string) (id Identity, err error) {
	scan := tries == scanTries
	if err := ctx.Err(); err != nil {
		return Identity{}, fmt.Errorf("probe %s: %w", name, err)
	}
	var u usage
	var s *session
	defer func() {
		if s != nil {
			r.close(name, s, &u)
		}
		switch {
		case u.opens > 0:
			r.log.Info("port touched", "port", name, "opens", u.opens, "bytes_sent", u.sent, "bytes_received", u.recv,
				"longest_open", u.longest.Round(time.Millisecond), "ok", err == nil)
		case errors.Is(err, ErrBusy):
			r.log.Info("port busy (held by another program); not touched", "port", name, "err", err)
		}
	}()
	seq, at := r.cfg.Sequence(), r.cfg.Now()
	var best error
	var bestRank outcome
	sends := 0
	for _, d := range dialects {
		hid, err := gmp3.HeaderID(d, known)
		if err != nil {
			hid, _ = gmp3.HeaderID(d, "")
		}
		req, err := gmp3.EchoRequest(d, hid, seq, at)
		if err != nil {
			return Identity{}, fmt.Errorf("probe %s: %w", name, err)
		}
		n := tries
		if scan {
			n = 1
		}
		for try := 1; try <= n; try++ {
			if s != nil && s.sends > 0 && time.Until(s.hold) < r.cfg.AckTimeout {
				r.close(name, s, &u) // this send would not fit: the POS gets its port
				s = nil
			}
			if s == nil {
				if s, err = r.open(ctx, name); err != nil {
					if best != nil && ctx.Err() != nil {
						return Identity{}, fmt.Errorf("%w (%d sends in %d opens; %v)", best, sends, u.opens, err)
					}
					return Identity{}, fmt.Errorf("probe %s: %w", name, err)
				}
			}
			if s.sends == 0 || try == 1 {
				r.tr.comment("dialect %s, header id %s, sequence %d, clock %s", d, hid, seq, at.Format("2006-01-02T15:04:05"))
			}
			s.sends++
			sends++
			t := &echoTry{c: s.c, d: d, req: req, seq: seq, ack: r.cfg.AckTimeout, hold: s.hold, tries: max(n, 1)}
			resp, err := t.run(ctx)
			if err == nil {
				r.tr.comment("answered: fiscal id %s (%s)", resp.FiscalID, d)
				return Identity{FiscalSerial: resp.FiscalID, Port: name, Protocol: d.String(), Source: SourceDevice, ReadAt: r.cfg.Now()}, nil
			}
			err = fmt.Errorf("probe %s: %s try %d: %w", name, d, try, err)
			r.log.Debug("echo failed", "err", err)
			r.tr.comment("%v", err)
			rank := classify(err)
			if rank > bestRank {
				best, bestRank = err, rank
			}
			if rank == outFinal {
				return Identity{}, err
			}
			if scan && n == 1 && (rank == outNAK || rank == outReply) {
				// A GMP-3 device is on this port: this dialect gets
				// every try, as on a configured port.
				n = r.cfg.Tries
				t.tries = n
			}
		}
	}
	if sends > 1 {
		// The most telling error, and how much was tried.
		return Identity{}, fmt.Errorf("%w (%d sends in %d dialect(s), %d opens)", best, sends, len(dialects), u.opens+1)
	}
	return Identity{}, best
}
