//go:build !windows

package device

import "go.bug.st/serial"

// cancelIO does nothing here: closing a Unix port wakes its reads.
func cancelIO(serial.Port) {}

// isRefused: on Unix syscall.ECONNREFUSED already matches.
func isRefused(error) bool { return false }
