//go:build !windows && !linux

package device

import "go.bug.st/serial"

// cancelIO does nothing here: closing a Unix port wakes its reads.
func cancelIO(serial.Port) {}
