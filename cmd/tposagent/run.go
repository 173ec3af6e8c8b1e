package main

import (
	"context"
	"log/slog"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
)

func cmdRun(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "run", "run [--config FILE] [--service]",
		"  tposagent run                                  # the installed config\n"+
			"  tposagent run --config ./config.toml           # a config of your own, in the foreground\n")
	addConfigFlag(fs, e)
	service := fs.Bool("service", false, "a service manager runs this process (install writes it on the service's command line); only its stop requests end the agent")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("run: unexpected argument %q", fs.Arg(0))
	}
	return installer.Run(ctx, installer.RunOptions{
		Name:    "tposagent",
		Service: *service,
		Logger:  slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Main: func(ctx context.Context, sysLog slog.Handler) error {
			// The config is read here, inside the service, so that under
			// the Windows service manager a bad config reaches the Event
			// Log instead of ending the process before it connects.
			cfg, err := config.Load(e.configPath)
			if err != nil {
				if sysLog != nil {
					slog.New(sysLog).Error("cannot start: " + err.Error())
				}
				return err
			}
			logs, err := agent.NewLogging(cfg, e.stderr, sysLog)
			if err != nil {
				return err
			}
			defer logs.Close()
			a, err := agent.New(cfg, agent.Options{Logger: logs.Logger})
			if err != nil {
				logs.Logger.Error("cannot start", "err", err)
				return err
			}
			return a.Run(ctx)
		},
	})
}
