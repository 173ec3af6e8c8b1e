package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"os"
	"runtime"
	"strings"

	"golang.org/x/term"

	"github.com/tposagent/tposagent/installer"
)

// lookupEnv reads the environment; tests replace it.
var lookupEnv = os.LookupEnv

const installExamples = `  # interactive: asks for what is missing
  sudo tposagent install

  # fleet roll-out (Ansible, GPO): never prompts, fails naming what is missing
  TPOSAGENT_TPOSL_PASSWORD=… TPOSAGENT_ODUYO_API_KEY=… TPOSAGENT_ODUYO_PASSWORD=… \
  tposagent install --unattended --tposl-url https://lisans.triaeczane.com/TPOSL \
    --tposl-username magaza12 --oduyo-base-url https://www.siteadi.com \
    --oduyo-username kasa --tax-number 1234567890 --pos-no 3

  # see what would happen
  tposagent install --dry-run --tposl-url …
`

func cmdInstall(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "install", "install [flags]", installExamples)
	addConfigFlag(fs, e)
	unattended := fs.Bool("unattended", false, "never prompt; missing values are an error (fleet roll-out)")
	dryRun := fs.Bool("dry-run", false, "show what would be done; change nothing")
	noStart := fs.Bool("no-start", false, "register the service but do not start it")
	noService := fs.Bool("no-service", false, "only write the config and data dir; do not touch the service manager")
	delayed := fs.Bool("delayed-start", false, "Windows: start the service a little after boot (delayed automatic start)")
	fromMSI := fs.Bool("msi", false, "run by the Windows installer's custom action: msiexec properties as NAME=value lines on stdin (see installer/README.md)")
	fields := installer.Fields()
	values := make(map[string]*string, len(fields))
	for _, f := range fields {
		values[f.Key] = fs.String(f.Flag, "", fmt.Sprintf("%s [env %s]", f.Usage, f.Env))
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("install: unexpected argument %q (values are given as --flag value)", fs.Arg(0))
	}
	if *fromMSI {
		var other string
		fs.Visit(func(fl *flag.Flag) {
			if fl.Name != "msi" && fl.Name != "config" {
				other = fl.Name
			}
		})
		if other != "" {
			return usageErrorf("install --msi: --%s cannot be combined with it (the values come on stdin)", other)
		}
		return installFromMSI(e, configPathOrDefault(e))
	}

	// Environment first, then flags: a flag given on the command line wins.
	set := map[string]string{}
	for _, f := range fields {
		if v, ok := lookupEnv(f.Env); ok && v != "" {
			set[f.Key] = v
		}
	}
	byFlag := map[string]installer.Field{}
	for _, f := range fields {
		byFlag[f.Flag] = f
	}
	var flagErr error
	fs.Visit(func(fl *flag.Flag) {
		f, ok := byFlag[fl.Name]
		if !ok {
			return
		}
		v := *values[f.Key]
		if strings.TrimSpace(v) == "" && flagErr == nil {
			flagErr = usageErrorf("install: --%s needs a value", fl.Name)
		}
		set[f.Key] = v
	})
	if flagErr != nil {
		return flagErr
	}

	opts := installer.BootstrapOptions{ConfigPath: configPathOrDefault(e), Set: set, DryRun: *dryRun}
	if !*unattended && e.stdinIsTerminal {
		p := &installer.Prompter{In: e.stdin, Out: e.stdout}
		if f, ok := e.stdin.(*os.File); ok {
			p.ReadSecret = func() (string, error) {
				b, err := term.ReadPassword(int(f.Fd()))
				return string(b), err
			}
		}
		opts.Ask = p.Ask
	}
	res, err := installer.Bootstrap(opts)
	if errors.Is(err, installer.ErrMissing) {
		if *unattended {
			return usageErrorf("install --unattended: %v", err)
		}
		return usageErrorf("install: %v (no terminal to ask on; pass them or use the environment)", err)
	}
	if errors.Is(err, iofs.ErrPermission) {
		return fmt.Errorf("install: %w (run it as root: sudo tposagent install; on Windows from an elevated prompt)", err)
	}
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	printBootstrap(e, res, *dryRun)
	for _, w := range res.Config.Warnings() {
		fmt.Fprintf(e.stdout, "warning:   %s\n", w)
	}

	spec := installer.Spec{ConfigPath: res.ConfigPath, DataDir: res.DataDir, LogFile: res.Config.LogFile(), DelayedAutoStart: *delayed}
	if *dryRun {
		fmt.Fprintf(e.stdout, "service:   would register %q: %s\n", installer.DefaultName, strings.Join(append([]string{"<this binary>"}, spec.Arguments()...), " "))
		if runtime.GOOS == "linux" {
			if spec.Executable == "" {
				spec.Executable, _ = os.Executable()
			}
			unit, err := installer.RenderUnit(spec.Unit())
			if err != nil {
				return fmt.Errorf("install: %w", err)
			}
			fmt.Fprintf(e.stdout, "\n%s", unit)
		}
		return nil
	}
	if *noService {
		return nil
	}
	m, err := installer.NewManager(spec, nil)
	if errors.Is(err, installer.ErrNoServiceManager) {
		return fmt.Errorf("install: config and data dir are ready, but %w; run 'tposagent run --config %s' under your own supervisor, or use --no-service", err, res.ConfigPath)
	}
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	before, err := m.Status()
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	upgraded, err := m.Install()
	for _, w := range m.Warnings() {
		fmt.Fprintf(e.stdout, "warning:   %s\n", w)
	}
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	what := "registered"
	if upgraded {
		what = "updated in place"
	}
	fmt.Fprintf(e.stdout, "service:   %s %s (%s, automatic start)\n", installer.DefaultName, what, m.Platform())
	if runtime.GOOS == "linux" {
		fmt.Fprintf(e.stdout, "service:   runs as user %s (group dialout for the serial port); it owns the data dir, reads the config through its group (0640)\n", installer.ServiceUser)
	}
	for _, w := range m.Warnings() {
		fmt.Fprintf(e.stdout, "warning:   %s\n", w)
	}
	if *noStart {
		return nil
	}
	if err := startOrRestart(m, before); err != nil {
		return fmt.Errorf("install: %w (check 'tposagent doctor' and the service log)", err)
	}
	fmt.Fprintf(e.stdout, "service:   started; check it with 'tposagent status'\n")
	return nil
}

// startOrRestart starts the service, or restarts it when it was running
// before the install (so that it runs the binary and config just written).
func startOrRestart(m *installer.Manager, before installer.Status) error {
	if before == installer.StatusRunning {
		return m.Restart()
	}
	return m.Start()
}

func printBootstrap(e *env, r *installer.BootstrapResult, dry bool) {
	verb := ""
	if dry {
		verb = "would be "
	}
	switch {
	case r.Created:
		fmt.Fprintf(e.stdout, "config:    %s %screated (%s)\n", r.ConfigPath, verb, ownerOnlyNote())
	case len(r.Changed) > 0:
		fmt.Fprintf(e.stdout, "config:    %s kept, %supdated: %s\n", r.ConfigPath, verb, strings.Join(r.Changed, ", "))
	default:
		fmt.Fprintf(e.stdout, "config:    %s kept unchanged\n", r.ConfigPath)
	}
	fmt.Fprintf(e.stdout, "data dir:  %s\n", r.DataDir)
	if r.TokenGenerated {
		fmt.Fprintf(e.stdout, "api token: %sgenerated (api.token in the config file)\n", verb)
	} else {
		fmt.Fprintf(e.stdout, "api token: kept\n")
	}
}

// ownerOnlyNote says how the config file is closed to other users here.
func ownerOnlyNote() string {
	if runtime.GOOS == "windows" {
		return "readable by Administrators and SYSTEM only"
	}
	return "0600"
}
