// Package devicetest runs a simulated fiscal cash register (ÖKC) for the
// demo and for tests. It speaks the GMP-3 link layer of package gmp3 in any
// of its three dialects — ACK/NAK, checksums, the ECHO answer with the
// device's fiscal id in the header — over a pseudo-terminal (the agent opens
// it through go.bug.st/serial exactly as a real port) or over TCP
// ("tcp://127.0.0.1:port", for Ethernet ÖKCs and where there are no
// pseudo-terminals). It can be told to misbehave (Fault) while it runs, and
// it can replay the device's side of a trace captured from a real device.
//
// It records every byte it receives, so a test can prove what the agent
// wrote (never a pairing or fiscal command).
package devicetest

import (
	"errors"
	"log/slog"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/gmp3"
)

// Fault is a way for the simulated device to misbehave.
type Fault int

// Faults. Each applies to the requests that arrive while it is set.
const (
	FaultNone        Fault = iota // ACK, then the answer
	FaultSilent                   // read requests, never answer
	FaultGarbage                  // answer with random bytes that form no frame
	FaultZeroFlood                // answer with a stream of 0x00 (64 KiB per request)
	FaultEcho                     // send the request's own bytes back (a loopback)
	FaultBadChecksum              // ACK, then an answer with a wrong check (again after each NAK)
	FaultBadSequence              // ACK, then an answer with another request's sequence
	FaultNAKFirst                 // NAK the first send of each request, answer its repeat
	FaultNAKAll                   // NAK every frame (a NAK storm)
	FaultNoACK                    // no ACK: the answer starts at once with its STX
	FaultStrict                   // answer result "03" when the header id is not the device's own
	FaultBusy                     // answer result "91" (busy)
	FaultSlow                     // ACK and answer one byte every Options.ByteDelay (default 1 ms)
	FaultHangUp                   // ACK, half an answer, then hang up: the port is gone for good
	FaultDeaf                     // stop reading altogether: the agent's writes back up
)

var faultNames = [...]string{"none", "silent", "garbage", "zero-flood", "echo", "bad-checksum", "bad-sequence",
	"nak-first", "nak-all", "no-ack", "strict", "busy", "slow", "hang-up", "deaf"}

func (f Fault) String() string {
	if f >= 0 && int(f) < len(faultNames) {
		return faultNames[f]
	}
	return "fault(?)"
}

// Faults lists every fault, FaultNone first.
func Faults() []Fault {
	out := make([]Fault, len(faultNames))
	for i := range out {
		out[i] = Fault(i)
	}
	return out
}

// ParseFault reads a fault by name.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if n == s {
			return Fault(i), nil
		}
	}
	return 0, errors.New("devicetest: unknown fault " + s)
}

// Transports.
const (
	PTY = "pty"
	TCP = "tcp"
)

// Options configures a simulated device.
type Options struct {
	FiscalSerial string       // default "JI20012345"
	Dialect      gmp3.Dialect // default CRC-16/ARC
	Transport    string       // PTY (default) or TCP
	Fault        Fault        // initial fault
	// Shifted makes answers carry 2 bytes between len and id, the receive
	// quirk seen in Hugin's code.
	Shifted bool
	// ByteDelay is the pause between bytes under FaultSlow; default 1 ms.
	ByteDelay time.Duration
	// InterByte is how long a partial frame may wait for its next byte
	// before the device NAKs it; default 100 ms (Ingenico's setting).
	InterByte time.Duration
	// Replay, when set, replaces the device's behaviour: it waits for each
	// "tx" event's bytes and sends each "rx" event's bytes, in order (see
	// device.ReadTrace), then stays silent.
	Replay []device.TraceEvent
	// Logger receives a line per request; nil discards.
	Logger *slog.Logger
}

// ErrUnsupported is returned by Start for a pseudo-terminal where there
// are none (use Transport TCP).
var ErrUnsupported = errors.New("devicetest: no pseudo-terminals on this os")

func (o *Options) defaults() {
	if o.FiscalSerial == "" {
		o.FiscalSerial = "JI20012345"
	}
	if o.Transport == "" {
		o.Transport = PTY
	}
	if o.ByteDelay <= 0 {
		o.ByteDelay = time.Millisecond
	}
	if o.InterByte <= 0 {
		o.InterByte = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}
