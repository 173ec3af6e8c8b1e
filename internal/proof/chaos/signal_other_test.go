//go:build !windows

package chaos

import "os"

// interrupt asks the agent to stop, as Ctrl-C or the service manager does.
func interrupt(p *os.Process) error { return p.Signal(os.Interrupt) }
