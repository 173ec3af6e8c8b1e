package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

func cmdUninstall(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "uninstall", "uninstall [--purge]", "  sudo tposagent uninstall           # keeps config and data\n  sudo tposagent uninstall --purge   # removes them too\n")
	addConfigFlag(fs, e)
	purge := fs.Bool("purge", false, "also delete what install recorded in the data dir's manifest: the config file, the agent's files in the data dir (the outbox!), its log; directories only when install created them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path := configPathOrDefault(e)
	m, err := manager(e)
	switch {
	case errors.Is(err, installer.ErrNoServiceManager) && *purge:
		fmt.Fprintf(e.stdout, "service:   %v; nothing to remove\n", err)
	case err != nil:
		return fmt.Errorf("uninstall: %w", err)
	default:
		err := m.Uninstall()
		switch {
		case errors.Is(err, installer.ErrNotInstalled):
			fmt.Fprintf(e.stdout, "service:   not installed\n")
		case err != nil:
			return fmt.Errorf("uninstall: %w", err)
		default:
			fmt.Fprintf(e.stdout, "service:   stopped and removed\n")
		}
	}
	if !*purge {
		fmt.Fprintf(e.stdout, "kept:      %s and the data dir (use --purge to delete them)\n", path)
		return nil
	}
	dataDir, logFile := config.DefaultDataDir(), ""
	if data, err := config.ReadFile(path); err == nil {
		c, err := config.Parse(data, path)
		if err != nil {
			return fmt.Errorf("uninstall --purge: %w (fix or delete it by hand)", err)
		}
		c.Resolve()
		dataDir, logFile = c.DataDir, c.LogFile()
	} else if !errors.Is(err, config.ErrNotFound) {
		return fmt.Errorf("uninstall --purge: read config: %w", err)
	}
	res, err := installer.Purge(path, dataDir, logFile)
	for _, p := range res.Removed {
		fmt.Fprintf(e.stdout, "purged:    %s\n", p)
	}
	for _, k := range res.Kept {
		fmt.Fprintf(e.stdout, "kept:      %s\n", k)
	}
	if err != nil {
		return fmt.Errorf("uninstall: %w", err)
	}
	return nil
}
