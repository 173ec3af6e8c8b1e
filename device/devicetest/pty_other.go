//go:build !linux

package devicetest

// startPTY: no pseudo-terminals here; use Transport TCP.
func (s *Sim) startPTY() error { return ErrUnsupported }
