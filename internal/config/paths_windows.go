//go:build windows

package config

import (
	"os"
	"path/filepath"
)

// programData is %ProgramData%, never derived from the working directory.
func programData() string {
	if d := os.Getenv("ProgramData"); d != "" && filepath.IsAbs(d) {
		return d
	}
	return `C:\ProgramData`
}

// DefaultPath is where the config file lives when --config is not given.
func DefaultPath() string { return filepath.Join(programData(), "tposagent", "config.toml") }

// DefaultDataDir holds the bbolt file, caches and the log.
func DefaultDataDir() string { return filepath.Join(programData(), "tposagent", "data") }

// openFlags: Windows has no FIFO to wait on (a named pipe is not a path a
// Stat calls regular; the check before the open refuses it).
const openFlags = 0
