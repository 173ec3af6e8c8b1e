package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

func configPathOrDefault(e *env) string {
	p := e.configPath
	if p == "" {
		p = config.DefaultPath()
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p
}

// serviceSpec is the service the CLI controls for the config file at path:
// its data dir and log file come from that file, so that the spec is the
// one install registered. A missing, unreadable or broken file gives the
// defaults: start, stop and uninstall never rewrite the unit and must work
// on a till whose config is damaged.
func serviceSpec(path string) installer.Spec {
	c := config.Default()
	c.Path = path
	if data, err := config.ReadFile(path); err == nil { // never a FIFO's endless wait
		if parsed, err := config.Parse(data, path); err == nil {
			c = *parsed
		}
	}
	c.Resolve()
	return installer.Spec{ConfigPath: path, DataDir: c.DataDir, LogFile: c.LogFile()}
}

// manager returns the service manager for the configured service.
func manager(e *env) (*installer.Manager, error) {
	return installer.NewManager(serviceSpec(configPathOrDefault(e)), nil)
}

func cmdStart(ctx context.Context, e *env, args []string) error {
	return control(e, args, "start", (*installer.Manager).Start)
}

func cmdStop(ctx context.Context, e *env, args []string) error {
	return control(e, args, "stop", (*installer.Manager).Stop)
}

func cmdRestart(ctx context.Context, e *env, args []string) error {
	return control(e, args, "restart", (*installer.Manager).Restart)
}

func control(e *env, args []string, op string, f func(*installer.Manager) error) error {
	fs := newFlagSet(e, op, op, "")
	addConfigFlag(fs, e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", op, fs.Arg(0))
	}
	m, err := manager(e)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := f(m); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: done\n", op)
	return nil
}
