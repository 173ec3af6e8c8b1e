//go:build !linux

package devicetest

// Sim is a simulated device; on this OS it cannot be started.
type Sim struct{}

// Start returns ErrUnsupported on this OS.
func Start(opts Options) (*Sim, error) { return nil, ErrUnsupported }

// Port returns "".
func (s *Sim) Port() string { return "" }

// SetFault does nothing.
func (s *Sim) SetFault(Fault) {}

// Requests returns 0.
func (s *Sim) Requests() int { return 0 }

// Close does nothing.
func (s *Sim) Close() error { return nil }

// SetFiscalSerial changes the fiscal ID the device answers with.
func (s *Sim) SetFiscalSerial(string) {}
