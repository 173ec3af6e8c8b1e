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
// Port "auto" asks the port that answered last with every dialect and try,
// then each listed serial port (USB first, Config.Exclude skipped) with one
// try per dialect. The dialect that answered is remembered with its port.
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
	ErrBusy = errors.New("port busy")
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
	DefaultAckTimeout  = 4500 * time.Millisecond // Hugin's ACK wait and read timeout
	DefaultTries       = 3                       // Hugin's MAX_TRY_COUNT
	DefaultProbeBudget = 45 * time.Second
)

// Port and protocol values with a meaning of their own.
const (
	PortAuto     = "auto"
	PortNone     = "none"
	ProtocolAuto = "auto"
)

// Config configures a Reader. The zero value reads port "auto" with
// protocol "auto", 115200 baud 8N1, Hugin's 4.5 s ACK wait and 3 tries per
// dialect, within 45 s, without a cache.
type Config struct {
	Port        string        // "auto" (default), "none", a serial port (COM3, /dev/ttyUSB0) or "tcp://host:port"
	Protocol    string        // "auto" (default), "crc16-arc", "crc16-ccitt", "t300"
	Baud        int           // default 115200
	AckTimeout  time.Duration // wait for ACK, and then for the whole answer; default 4.5 s
	Tries       int           // sends per dialect; default 3
	ProbeBudget time.Duration // a whole Read, all ports and dialects; default 45 s
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
		id, err = r.auto(bctx, c, known)
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

// auto probes the remembered port first, with every try, then each listed
// port with one try per dialect — unless something on it answers a GMP-3
// frame (a NAK, an ACK, a frame): that dialect then gets all its tries, as
// on a configured port. Silence or noise on a port costs one try per
// dialect, so a scan of many ports stays within the probe budget.
func (r *Reader) auto(ctx context.Context, c cacheData, known string) (Identity, error) {
	list, lerr := r.cfg.ListPorts()
	if lerr != nil {
		r.log.Warn("cannot list serial ports", "err", lerr)
	}
	var names []string
	seen := map[string]bool{}
	add := func(name string) {
		key := portKey(name)
		if name == "" || seen[key] || r.excluded(name) {
			return
		}
		seen[key] = true
		names = append(names, name)
	}
	add(c.AutoPort)
	for _, p := range list {
		add(p.Name)
	}
	if len(names) == 0 {
		if lerr != nil {
			return Identity{}, fmt.Errorf("auto-detect device: list ports: %w: %w", lerr, ErrNoDevice)
		}
		return Identity{}, fmt.Errorf("auto-detect device: no serial ports: %w", ErrNoDevice)
	}
	var busy, last error
	for i, name := range names {
		tries := scanTries
		if i == 0 && name == c.AutoPort {
			tries = r.cfg.Tries
		}
		id, err := r.probe(ctx, name, r.order(c.Dialects[name], known), tries, known)
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

// probe opens one port, asks ECHO in each dialect up to tries times (a
// scanned port: see scanTries), and closes it.
func (r *Reader) probe(ctx context.Context, name string, dialects []gmp3.Dialect, tries int, known string) (Identity, error) {
	scan := tries == scanTries
	if err := ctx.Err(); err != nil {
		return Identity{}, fmt.Errorf("probe %s: %w", name, err)
	}
	c, err := dial(ctx, name, r.cfg.Baud, r.cfg.AckTimeout, r.tr)
	if err != nil {
		return Identity{}, fmt.Errorf("probe %s: %w", name, err)
	}
	defer func() { r.tr.comment("port %s closed after %.6f s", name, r.tr.since().Seconds()) }()
	defer c.Close()
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
		r.tr.comment("dialect %s, header id %s, sequence %d, clock %s", d, hid, seq, at.Format("2006-01-02T15:04:05"))
		n := tries
		if scan {
			n = 1
		}
		t := &echoTry{c: c, d: d, req: req, seq: seq, ack: r.cfg.AckTimeout, tries: max(n, 1)}
		for try := 1; try <= n; try++ {
			sends++
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
		return Identity{}, fmt.Errorf("%w (%d sends in %d dialect(s))", best, sends, len(dialects))
	}
	return Identity{}, best
}
