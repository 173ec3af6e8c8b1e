//go:build !windows

package config

import "syscall"

// DefaultPath is where the config file lives when --config is not given.
func DefaultPath() string { return "/etc/tposagent/config.toml" }

// DefaultDataDir holds the bbolt file, caches and the log.
func DefaultDataDir() string { return "/var/lib/tposagent" }

// openFlags: opening a FIFO for reading does not wait for a writer.
const openFlags = syscall.O_NONBLOCK
