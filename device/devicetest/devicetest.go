// Package devicetest runs a simulated fiscal cash register (ÖKC) on a
// pseudo-terminal, for the demo and for tests: it answers the GMP-3 ECHO
// request like a real device, with a configurable identity, and can be told
// to misbehave (Fault) while it runs. The agent opens Sim.Port() through
// go.bug.st/serial exactly as it opens a real port.
//
// The simulator needs pseudo-terminals and works on Linux only; elsewhere
// Start returns ErrUnsupported.
package devicetest

import (
	"errors"
	"log/slog"
	"time"
)

// Fault is a way for the simulated device to misbehave.
type Fault int

// Faults. Each applies to the requests that arrive while it is set.
const (
	FaultNone          Fault = iota // answer correctly
	FaultSilent                     // read requests, never answer
	FaultSlow                       // answer correctly, one byte every Options.ByteDelay
	FaultGarbage                    // answer with random bytes that form no frame
	FaultEcho                       // send our own request bytes back
	FaultZeroFlood                  // answer with a stream of 0x00 (about 64 KiB per request)
	FaultBadLRC                     // answer with a wrong checksum
	FaultWrongSequence              // answer with another request's sequence number
	FaultHangUp                     // send half an answer and hang up: the port is gone for good
)

var faultNames = [...]string{"none", "silent", "slow", "garbage", "echo", "zero-flood", "bad-lrc", "wrong-sequence", "hang-up"}

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

// Options configures a simulated device. Empty identity fields take the
// values of the spec's example device.
type Options struct {
	FiscalSerial string // default "JI20012345"
	ECRSerial    string // default "JHWE20000079"
	Brand        string // default "INGENICO"; Turkish letters are sent as Windows-1254
	Model        string // default "IWE280"
	Fault        Fault  // initial fault
	// ByteDelay is the pause between bytes under FaultSlow; default 5 ms.
	ByteDelay time.Duration
	// AnswerDelay is the pause before every answer; default none.
	AnswerDelay time.Duration
	// Logger receives a line per request; nil discards.
	Logger *slog.Logger
}

// ErrUnsupported is returned by Start where there are no pseudo-terminals.
var ErrUnsupported = errors.New("devicetest: simulated device needs linux pseudo-terminals")

func (o *Options) defaults() {
	if o.FiscalSerial == "" {
		o.FiscalSerial = "JI20012345"
	}
	if o.ECRSerial == "" {
		o.ECRSerial = "JHWE20000079"
	}
	if o.Brand == "" {
		o.Brand = "INGENICO"
	}
	if o.Model == "" {
		o.Model = "IWE280"
	}
	if o.ByteDelay <= 0 {
		o.ByteDelay = 5 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}
