package till

import "io"

// procOptions describe one run of the agent.
type procOptions struct {
	bin, cfgPath string
	// logFile is the agent's log file. A Windows service has no stderr:
	// its log file is copied to out instead.
	logFile string
	out     io.Writer
	env     []string // the child's environment (a Windows service gets the manager's)
	wrap    []string // a command line the agent runs under (Unix only)
	// child runs a plain child process on Windows too (no service
	// registration); stop then fails and the caller kills it.
	child bool
}

// proc is one running agent process, started the way its service manager
// starts it, so that stop is what the manager sends: SIGTERM on Unix
// (systemd's stop); on Windows the Stop request of the service control
// manager to a temporary service (Windows has no signal for another
// process, and a kill is not a stop).
type proc struct {
	// exited receives the exit result once: nil for exit code 0, else an
	// error naming the code. Buffered; a reader may put it back.
	exited chan error
	impl   procImpl
}

type procImpl interface {
	stop() error
	kill() error
	pid() int
	flush() // bring the output up to date (Windows: copy the log file's new lines)
}

func (p *proc) stop() error { return p.impl.stop() }
func (p *proc) kill() error { return p.impl.kill() }
func (p *proc) pid() int    { return p.impl.pid() }
func (p *proc) flush()      { p.impl.flush() }
