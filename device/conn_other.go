//go:build !windows

package device

// isRefused: on Unix syscall.ECONNREFUSED already matches.
func isRefused(error) bool { return false }

// isSharingViolation is a Windows error only.
func isSharingViolation(error) bool { return false }
