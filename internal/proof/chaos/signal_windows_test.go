package chaos

import "os"

// interrupt stops the agent; Windows has no SIGINT for another process,
// so it is a kill.
func interrupt(p *os.Process) error { return p.Kill() }
