//go:build !windows

package main

import (
	"os"
	"syscall"
)

// interruptProcess asks p to stop cleanly.
func interruptProcess(p *os.Process) error { return p.Signal(syscall.SIGINT) }
