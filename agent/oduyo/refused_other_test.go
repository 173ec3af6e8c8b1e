//go:build !windows

package oduyo

import "syscall"

// errConnRefused is how a dial to a closed port fails on this OS.
var errConnRefused error = syscall.ECONNREFUSED
