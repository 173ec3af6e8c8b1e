package till

import (
	"errors"
	"os"
)

// interrupt: Windows has no SIGINT for another process (a service is
// stopped by the service manager), so the caller kills the agent.
func interrupt(p *os.Process) error {
	return errors.New("windows cannot interrupt another process")
}
