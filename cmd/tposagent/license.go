package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
)

// licenseLine is the licence in one line: the state, then the server's
// or the agent's explanation.
func licenseLine(l tposl.License) string {
	line := string(l.State)
	switch {
	case strings.HasPrefix(l.Message, line):
		line = l.Message // "demo licence: 20 days left, …" says the state itself
	case l.Message != "":
		line += ": " + l.Message
	}
	if !l.CheckedAt.IsZero() && l.Source == tposl.SourceServer {
		line += fmt.Sprintf(" (checked %s)", fmtTime(&l.CheckedAt))
	}
	return line
}

func cmdLicense(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "license", "license [--json]",
		"  tposagent license && start-pos.exe     # exit 0 licensed/demo, 3 expired/inactive/mismatch, 4 unknown\n")
	addConfigFlag(fs, e)
	asJSON := fs.Bool("json", false, "print the licence as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := apiClient(e)
	if err != nil {
		return err
	}
	l, err := c.License(ctx)
	if err != nil {
		if errors.Is(err, localapi.ErrNotRunning) {
			fmt.Fprintf(e.stderr, "tposagent: %v\n", err)
			return withCode(exitUnknown)
		}
		return err
	}
	if *asJSON {
		if err := printJSON(e.stdout, l); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(e.stdout, licenseLine(l))
	}
	if code := l.State.ExitCode(); code != exitOK { // 0 licensed/demo, 3 expired/inactive/mismatch, 4 unknown
		return withCode(code)
	}
	return nil
}
