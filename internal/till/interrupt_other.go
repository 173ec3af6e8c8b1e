//go:build !windows

package till

import "os"

// interrupt asks the agent to stop, as Ctrl-C or systemd's SIGTERM does.
func interrupt(p *os.Process) error { return p.Signal(os.Interrupt) }
