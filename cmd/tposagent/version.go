package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/tposagent/tposagent/agent"
)

func cmdVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "version", "  tposagent version\n")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "tposagent %s (commit %s, built %s, %s %s/%s)\n",
		agent.Version, agent.Commit, agent.BuildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
