// Command tposagent is the till agent: it reads the fiscal identity of the
// cash register, registers the till with the TPOS licence server, keeps the
// licence state, and delivers kasa card updates and special codes to the
// Ödüyo ERP API through a durable outbox.
//
// main is thin: it parses the command line, builds a context and calls run;
// every subcommand lives in its own file and writes to injected writers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tposagent/tposagent/internal/i18n"
)

// Exit codes (a contract with scripts: README, "Commands").
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitExpired = 3 // licence expired, inactive or mismatched
	exitUnknown = 4 // licence state unknown
)

// env is what every subcommand gets: its streams and the global flags.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// configPath is the --config flag; empty means the OS default.
	configPath string
	// stdinIsTerminal reports whether prompts may be shown.
	stdinIsTerminal bool
	// lang is the --lang flag; "" means the locale decides (language()).
	lang i18n.Lang
	// lookupEnv reads the environment (nil: os.LookupEnv).
	lookupEnv func(string) (string, bool)
}

// command is one subcommand of the CLI.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"run", "run the agent in the foreground (what the service executes)", cmdRun},
		{"demo", "the whole job on this machine with simulated device and servers", cmdDemo},
		{"install", "install and start the service (writes config and data dir)", cmdInstall},
		{"uninstall", "stop and remove the service (keeps data unless --purge)", cmdUninstall},
		{"start", "start the installed service", cmdStart},
		{"stop", "stop the installed service", cmdStop},
		{"restart", "restart the installed service", cmdRestart},
		{"status", "registration, licence, device, outbox, connectivity", cmdStatus},
		{"license", "the licence state (exit 0 licensed/demo, 3 expired/inactive/mismatch/unregistered, 4 unknown)", cmdLicense},
		{"device", "serial ports and the fiscal identity: device ports | device probe", cmdDevice},
		{"kasa", "enqueue a kasa card update: kasa update", cmdKasa},
		{"special-code", "enqueue a special code: special-code create", cmdSpecialCode},
		{"outbox", "inspect and act on the queue: list | dead | retry ID | drop ID", cmdOutbox},
		{"doctor", "check config, port, servers, clock and disk; say what to fix", cmdDoctor},
		{"bugreport", "one zip for a support ticket (secrets replaced)", cmdBugreport},
		{"open", "open the status page in the default browser", cmdOpen},
		{"version", "version, commit, build date", cmdVersion},
	}
}

func main() {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, stdinIsTerminal: isTerminal(os.Stdin)}
	os.Exit(report(e.stderr, run(context.Background(), e, os.Args[1:])))
}

// run parses the global flags and dispatches to a subcommand. SIGINT and
// SIGTERM cancel the context of every command except "run", which wires
// them itself on the foreground path only (under the Windows service
// manager a user's logoff arrives as SIGTERM and must not stop the agent).
func run(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("tposagent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.configPath, "config", "", "path of the config file")
	fs.Func("lang", "language of the human output: tr or en", func(s string) error { return setLang(e, s) })
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(e.stdout)
			return nil
		}
		return usageErrorf("%v", err)
	}
	args = fs.Args()
	if len(args) == 0 {
		usage(e.stderr)
		return usageErrorf("no command given")
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		usage(e.stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			if c.name != "run" {
				var stop context.CancelFunc
				ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
			}
			return c.run(ctx, e, args[1:])
		}
	}
	return usageErrorf("unknown command %q (see tposagent --help)", name)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: tposagent [--config FILE] [--lang tr|en] COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'tposagent COMMAND --help' for a command's flags and examples.\n")
}

// exitErr carries an exit code other than 1 through the error chain.
type exitErr struct {
	code int
	err  error // nil: exit silently with code
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitErr) Unwrap() error { return e.err }

func usageErrorf(format string, a ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// withCode returns an error that exits with code and prints nothing.
func withCode(code int) error { return &exitErr{code: code} }

// report prints err as one line and maps it to an exit code.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitErr
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(stderr, "tposagent: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "tposagent: %v\n", err)
	return exitError
}

// newFlagSet returns a flag set for a subcommand whose --help prints the
// summary, the flags and examples to stdout.
func newFlagSet(e *env, name, synopsis, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stdout)
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "Usage: tposagent %s\n\n", synopsis)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if examples != "" {
			fmt.Fprintf(e.stdout, "\nExamples:\n%s", examples)
		}
	}
	return fs
}

// addConfigFlag lets a subcommand take --config after its name too
// ("tposagent run --config F", as the service is registered).
func addConfigFlag(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.configPath, "config", e.configPath, "path of the config file (default: the OS location)")
}

// parseFlags parses args of a command that takes no positional arguments.
// Flags may come anywhere ("status --json", "status extra --config F" is
// still a usage error, but one about "extra", not a silently ignored
// --config). --help is a clean exit; any other problem a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("%s: unexpected argument %q (see tposagent %s --help)", fs.Name(), pos[0], fs.Name())
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after
// positional arguments ("outbox retry 42 --config F") and returns the
// positional ones. After "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		fs.SetOutput(io.Discard)
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) { // Parse has already shown fs.Usage
			return nil, errHelpShown
		}
		if err != nil {
			return nil, usageErrorf("%s: %v", fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// errHelpShown ends a command after --help with exit code 0.
var errHelpShown = &exitErr{code: exitOK}
