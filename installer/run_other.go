//go:build !windows

package installer

import "context"

// runService reports false: on Linux the service manager (systemd) runs the
// agent as a foreground process and stops it with SIGTERM.
func runService(context.Context, RunOptions) (bool, error) { return false, nil }
