package agent

import (
	"bytes"
	"fmt"
	"sync"
)

// DeviceTraceFile, in the data dir, holds every byte of the agent's last
// device read (the format of `tposagent device probe --trace`), for a
// support ticket; it is replaced after each read.
const DeviceTraceFile = "device-last.trace"

// maxTrace bounds one read's trace (a flooding device is cut short).
const maxTrace = 256 << 10

// lastTrace collects one device read's trace, up to maxTrace bytes. Safe
// for concurrent use; writes never fail.
type lastTrace struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int
}

// Write keeps what fits and drops the rest, counting it; it always
// reports all of p taken, so the trace writer never stops.
func (t *lastTrace) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if room := maxTrace - t.buf.Len(); len(p) > room {
		t.dropped += len(p) - max(room, 0)
		p = p[:max(room, 0)]
	}
	t.buf.Write(p)
	return n, nil
}

func (t *lastTrace) reset() {
	t.mu.Lock()
	t.buf.Reset()
	t.dropped = 0
	t.mu.Unlock()
}

// bytes is the trace so far, with a note when it was cut.
func (t *lastTrace) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := bytes.Clone(t.buf.Bytes())
	if t.dropped > 0 {
		out = fmt.Appendf(out, "# %d more bytes of trace dropped (limit %d)\n", t.dropped, maxTrace)
	}
	return out
}
