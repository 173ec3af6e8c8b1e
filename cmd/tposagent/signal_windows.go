//go:build windows

package main

import (
	"errors"
	"os"
)

// interruptProcess: Windows has no SIGINT for another process without a
// shared console; the caller falls back to Kill.
func interruptProcess(p *os.Process) error { return errors.New("not supported on windows") }
