//go:build !windows

package wine

// version: wine runs Windows programs only.
func version() string { return "" }
