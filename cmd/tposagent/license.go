package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/internal/i18n"
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

// licenseText is licenseLine in the reader's language: in Turkish the
// same facts from the licence's fields (the message is the agent's English).
func licenseText(l tposl.License, lang i18n.Lang) string {
	if lang != i18n.TR {
		return licenseLine(l)
	}
	line := lang.State(string(l.State))
	if l.State == tposl.Demo && l.DaysLeft >= 0 {
		line += ": " + lang.F("%s left", "%s kaldı", lang.Days(l.DaysLeft))
	}
	if l.DemoEnd != "" && l.State == tposl.Demo {
		line += lang.F(" (until %s)", " (%s tarihine kadar)", lang.Date(l.DemoEnd))
	}
	if l.ErrorMessage != "" {
		line += "; " + lang.F("server: %s", "sunucu: %s", l.ErrorMessage)
	}
	if l.State == tposl.Mismatch && l.ApprovedFiscalSerial != "" {
		line += "; " + lang.F("approved for %s, this till has %s", "onaylı cihaz %s, bu kasadaki %s", l.ApprovedFiscalSerial, l.FiscalSerial)
	}
	if !l.CheckedAt.IsZero() && l.Source == tposl.SourceServer {
		line += lang.F(" (checked %s)", " (kontrol: %s)", lang.Time(l.CheckedAt))
	} else if l.Source == "cache" && !l.CheckedAt.IsZero() {
		line += lang.F(" (remembered from %s)", " (%s tarihli son cevaptan)", lang.Time(l.CheckedAt))
	}
	return line
}

func cmdLicense(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "license", "license [--json]",
		"  tposagent license && start-pos.exe     # exit 0 licensed/demo, 3 expired/inactive/mismatch/unregistered, 4 unknown\n")
	addConfigFlag(fs, e)
	addLangFlag(fs, e)
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
	forTerminal(&l, cliSecrets(e))
	if *asJSON {
		if err := printJSON(e.stdout, l); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(e.stdout, licenseText(l, e.language()))
	}
	if code := l.State.ExitCode(); code != exitOK { // 0 licensed/demo, 3 expired/inactive/mismatch/unregistered, 4 unknown
		return withCode(code)
	}
	return nil
}
