// Package device reads what the till registration needs from the hardware:
// the fiscal identity of the cash register (ÖKC) over a serial port, with the
// read-only GMP-3 ECHO exchange, and facts of the host PC.
//
// The agent never pairs with the device, never sends a fiscal command and
// never keeps the port open: a read opens the port, sends ECHO, waits for the
// answer with a deadline (up to Config.Tries times) and closes it. When the
// port is busy (the POS program holds it; Windows COM ports are exclusive) or
// the device is absent, Reader.Read falls back to the identity it cached at
// the last good read, so the agent still starts.
//
// Port "auto" probes every serial port (USB first, Config.Exclude skipped)
// one by one with one try each and a per-port limit of Config.Timeout, stops
// at the first valid identity and remembers that port: the next Read asks it
// first, with the full number of tries.
//
// It imports nothing of the agent or the outbox; the agent decides what
// an identity is used for.
package device

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tposagent/tposagent/device/gmp3"
)

// Source says where an identity came from.
type Source string

// Sources of an identity.
const (
	SourceDevice Source = "device" // read from the device just now
	SourceCache  Source = "cache"  // the last identity read, remembered on disk
	SourceConfig Source = "config" // device.fiscal_serial from the configuration
)

// Identity is the fiscal identity of the till's ÖKC.
type Identity struct {
	FiscalSerial string    `json:"fiscal_serial"`        // the ECHO response id, spaces trimmed, e.g. JI20012345
	ECRSerial    string    `json:"ecr_serial,omitempty"` // tag DFC10C
	Brand        string    `json:"brand,omitempty"`      // tag DFC10A, decoded from Windows-1254
	Model        string    `json:"model,omitempty"`      // tag DFC10B, decoded from Windows-1254
	Port         string    `json:"port,omitempty"`
	Source       Source    `json:"source"`
	ReadAt       time.Time `json:"read_at"` // when the device answered (for cache: the original read)
}

// Age is how old the identity is at now (how long ago the device answered).
func (id Identity) Age(now time.Time) time.Duration {
	if id.ReadAt.IsZero() {
		return 0
	}
	return now.Sub(id.ReadAt)
}

// Errors of a device read; match them with errors.Is. Frame errors (the
// device or something else answered, but not with a valid ECHO response)
// all match ErrBadFrame, and some match a more specific one too.
var (
	// ErrBusy: the port is held by another program, most likely the POS.
	ErrBusy = errors.New("port busy")
	// ErrPermission: the user may not open the port (on Linux: not in the
	// group owning it, see PortGroup).
	ErrPermission = errors.New("permission denied")
	// ErrNoDevice: no such port, not a serial port, or (auto) no port
	// answered like a fiscal device.
	ErrNoDevice = errors.New("no fiscal device")
	// ErrTimeout: the device did not answer, or not completely, in time.
	ErrTimeout = errors.New("no answer in time")
	// ErrDisconnected: the port went away during the exchange (unplugged).
	ErrDisconnected = errors.New("port disconnected")

	ErrBadFrame      = gmp3.ErrBadFrame      // any invalid answer
	ErrBadLRC        = gmp3.ErrBadLRC        // checksum mismatch
	ErrWrongSequence = gmp3.ErrWrongSequence // an answer to another request
	ErrWrongType     = gmp3.ErrWrongType     // not an ECHO response
	ErrEchoed        = gmp3.ErrEchoed        // our own request came back
	ErrResultCode    = gmp3.ErrResultCode    // the device answered with an error code (not a frame error)
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
	DefaultBaud    = 115200
	DefaultTimeout = time.Second
	DefaultTries   = 3
)

// Port values with a meaning of their own.
const (
	PortAuto = "auto"
	PortNone = "none"
)

// Config configures a Reader. The zero value reads port "auto" at 115200
// baud with 1 s per try and 3 tries, without a cache.
type Config struct {
	Port         string        // "auto" (default), "none", or a port name (COM3, /dev/ttyUSB0)
	Baud         int           // default 115200
	FiscalSerial string        // config override / fallback ("none" requires it)
	Exclude      []string      // ports auto never probes
	Timeout      time.Duration // answer timeout per try, default 1s
	Tries        int           // default 3
	CacheDir     string        // where the last identity and the auto winner are remembered (atomic writes); "" = no cache
	Logger       *slog.Logger  // nil: discard

	// ListPorts replaces Ports for "auto" (tests, or a caller that knows
	// better); nil uses Ports.
	ListPorts func() ([]PortInfo, error)
	// Now replaces time.Now for read and cache times; nil uses time.Now.
	Now func() time.Time
}

// Reader reads the identity as Config says. Its methods are safe for
// concurrent use; reads are serialised (one port open at a time).
type Reader struct {
	cfg  Config
	log  *slog.Logger
	open openFunc
	mu   sync.Mutex
}

// NewReader returns a Reader with cfg's defaults filled in.
func NewReader(cfg Config) *Reader {
	cfg.Port = strings.TrimSpace(cfg.Port)
	switch strings.ToLower(cfg.Port) {
	case "", PortAuto:
		cfg.Port = PortAuto
	case PortNone:
		cfg.Port = PortNone
	}
	if cfg.Baud <= 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Tries <= 0 {
		cfg.Tries = DefaultTries
	}
	if cfg.ListPorts == nil {
		cfg.ListPorts = Ports
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.FiscalSerial = strings.TrimSpace(cfg.FiscalSerial)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reader{cfg: cfg, log: log, open: openSerial}
}

// Read returns the freshest identity available. err != nil means the device
// itself could not be read (errors.Is: ErrBusy, ErrNoDevice, ErrTimeout,
// ErrPermission, ErrDisconnected, ErrBadFrame …, or the context's error),
// and the returned Identity may still be usable from cache or config (check
// id.FiscalSerial != ""). A configured FiscalSerial overrides the device's
// (Source config), but the device is still read for the ECR serial, brand and
// model when a port is set; port "none" returns the configured identity
// without touching any port.
func (r *Reader) Read(ctx context.Context) (Identity, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cached, winner := r.loadCache()

	var id Identity
	var err error
	switch r.cfg.Port {
	case PortNone:
		if r.cfg.FiscalSerial == "" {
			err = fmt.Errorf("read device: port is %q but no fiscal serial is configured: %w", PortNone, ErrNoDevice)
			break
		}
		return r.configIdentity(cached), nil
	case PortAuto:
		id, err = r.auto(ctx, winner)
	default:
		id, err = probe(ctx, r.open, r.cfg.Port, r.cfg.Baud, r.cfg.Timeout, r.cfg.Tries, r.cfg.Now, r.log)
	}
	if err == nil {
		if werr := r.saveCache(id, r.cfg.Port == PortAuto); werr != nil {
			r.log.Warn("cannot remember the device identity", "err", werr)
		}
		if r.cfg.FiscalSerial != "" {
			if r.cfg.FiscalSerial != id.FiscalSerial {
				r.log.Warn("configured fiscal serial differs from the device's; using the configured one",
					"configured", r.cfg.FiscalSerial, "device", id.FiscalSerial, "port", id.Port)
			}
			id.FiscalSerial = r.cfg.FiscalSerial
			id.Source = SourceConfig
		}
		return id, nil
	}

	if r.cfg.FiscalSerial != "" {
		return r.configIdentity(cached), err
	}
	if cached.FiscalSerial != "" {
		r.log.Debug("using the cached device identity", "fiscal_serial", cached.FiscalSerial,
			"age", cached.Age(r.cfg.Now()).Round(time.Second).String(), "err", err)
		return cached, err
	}
	return Identity{}, err
}

// configIdentity is the configured fiscal serial, with what the cache knows
// of the same device.
func (r *Reader) configIdentity(cached Identity) Identity {
	id := Identity{FiscalSerial: r.cfg.FiscalSerial, Source: SourceConfig, ReadAt: r.cfg.Now()}
	if cached.FiscalSerial == r.cfg.FiscalSerial {
		id.ECRSerial, id.Brand, id.Model, id.Port = cached.ECRSerial, cached.Brand, cached.Model, cached.Port
	}
	return id
}

// auto probes the remembered winner first, with every try, then each listed
// port once.
func (r *Reader) auto(ctx context.Context, winner string) (Identity, error) {
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
	add(winner)
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
		tries := 1
		if i == 0 && name == winner {
			tries = r.cfg.Tries
		}
		id, err := probe(ctx, r.open, name, r.cfg.Baud, r.cfg.Timeout, tries, r.cfg.Now, r.log)
		if err == nil {
			r.log.Info("fiscal device found", "port", name, "fiscal_serial", id.FiscalSerial)
			return id, nil
		}
		if ctx.Err() != nil {
			return Identity{}, fmt.Errorf("auto-detect device: %w", ctx.Err())
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
