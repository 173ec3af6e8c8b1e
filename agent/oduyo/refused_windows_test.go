//go:build windows

package oduyo

import "golang.org/x/sys/windows"

// errConnRefused is how a dial to a closed port fails on Windows (Winsock's
// own code, not the POSIX ECONNREFUSED).
var errConnRefused error = windows.WSAECONNREFUSED
