//go:build !windows

package till

import (
	"os/exec"
	"syscall"
)

// startProc starts "[wrap…] bin run --config F" as a child process.
func startProc(o procOptions) (*proc, error) {
	return startChild(o)
}

func startChild(o procOptions) (*proc, error) {
	args := append(append([]string{}, o.wrap...), o.bin, "run", "--config", o.cfgPath)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = o.env
	cmd.Stdout, cmd.Stderr = o.out, o.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{exited: make(chan error, 1), impl: unixProc{cmd}}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

type unixProc struct{ cmd *exec.Cmd }

// stop: SIGTERM, what systemd sends.
func (u unixProc) stop() error { return u.cmd.Process.Signal(syscall.SIGTERM) }
func (u unixProc) kill() error { return u.cmd.Process.Kill() }
func (u unixProc) pid() int    { return u.cmd.Process.Pid }
func (u unixProc) flush()      {} // the output is the process's own stdout and stderr
