package device

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A trace records every byte a probe sends and receives, one line per read
// or write:
//
//	<seconds since the port opened, 6 decimals> <tx|rx> <lowercase hex>
//
// Lines starting with '#' are comments (port, dialect, time of day). The
// first exchange with a real ÖKC, captured with `tposagent device probe
// --trace FILE`, can be replayed by the simulator in a test.

// Trace directions.
const (
	TraceTx = "tx" // agent → device
	TraceRx = "rx" // device → agent
)

// TraceEvent is one line of a trace.
type TraceEvent struct {
	At   time.Duration // since the port opened
	Dir  string        // TraceTx or TraceRx
	Data []byte
}

// Limits of ReadTrace.
const (
	maxTraceLine   = 64 << 10
	maxTraceEvents = 10000
)

// ErrBadTrace is returned by ReadTrace for a malformed trace.
var ErrBadTrace = errors.New("malformed device trace")

// ReadTrace parses a trace. Comments and blank lines are skipped; it
// returns the events and the comment lines (without '#').
func ReadTrace(r io.Reader) (events []TraceEvent, comments []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxTraceLine)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		if c, ok := strings.CutPrefix(s, "#"); ok {
			comments = append(comments, strings.TrimSpace(c))
			continue
		}
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, nil, fmt.Errorf("read trace: line %d: want 3 fields, got %d: %w", line, len(f), ErrBadTrace)
		}
		secs, err := strconv.ParseFloat(f[0], 64)
		if err != nil || secs < 0 || secs > 1e6 {
			return nil, nil, fmt.Errorf("read trace: line %d: time %q: %w", line, f[0], ErrBadTrace)
		}
		if f[1] != TraceTx && f[1] != TraceRx {
			return nil, nil, fmt.Errorf("read trace: line %d: direction %q (want tx or rx): %w", line, f[1], ErrBadTrace)
		}
		data, err := hex.DecodeString(f[2])
		if err != nil {
			return nil, nil, fmt.Errorf("read trace: line %d: %v: %w", line, err, ErrBadTrace)
		}
		if len(events) == maxTraceEvents {
			return nil, nil, fmt.Errorf("read trace: more than %d events: %w", maxTraceEvents, ErrBadTrace)
		}
		events = append(events, TraceEvent{At: time.Duration(secs * float64(time.Second)), Dir: f[1], Data: data})
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read trace: line %d: %v: %w", line+1, err, ErrBadTrace)
	}
	return events, comments, nil
}

// tracer writes trace lines; safe for concurrent use (an abandoned read may
// still report bytes).
type tracer struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time // monotonic
	err   error
}

func newTracer(w io.Writer) *tracer { return &tracer{w: w, start: time.Now()} }

func (t *tracer) comment(format string, args ...any) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, "# "+format+"\n", args...)
	}
}

func (t *tracer) record(dir string, b []byte) {
	if t == nil || len(b) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		_, t.err = fmt.Fprintf(t.w, "%.6f %s %x\n", time.Since(t.start).Seconds(), dir, b)
	}
}

// since is the time since the port opened.
func (t *tracer) since() time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return time.Since(t.start)
}

// restart sets time zero to now (the port was just opened).
func (t *tracer) restart() {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.start = time.Now()
	t.mu.Unlock()
}

// tracePort records what passes through a rawPort.
type tracePort struct {
	rawPort
	t *tracer
}

func (p tracePort) readTimeout(b []byte, d time.Duration) (int, error) {
	n, err := p.rawPort.readTimeout(b, d)
	p.t.record(TraceRx, b[:max(n, 0)])
	return n, err
}

// resetInput records what the flush dropped: late bytes of an earlier
// answer are part of what the device sent.
func (p tracePort) resetInput() []byte {
	b := p.rawPort.resetInput()
	if len(b) > 0 {
		p.t.comment("%d byte(s) waiting before the next send, dropped", len(b))
		p.t.record(TraceRx, b)
	}
	return b
}

func (p tracePort) writeTimeout(b []byte, d time.Duration) (int, error) {
	n, err := p.rawPort.writeTimeout(b, d)
	p.t.record(TraceTx, b[:max(n, 0)])
	return n, err
}
