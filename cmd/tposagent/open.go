package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/internal/config"
)

func cmdOpen(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "open", "open [--print] [--lang tr|en]",
		"  tposagent open               # the status page in the default browser\n"+
			"  tposagent open --print       # only print its address\n")
	addConfigFlag(fs, e)
	addLangFlag(fs, e)
	printOnly := fs.Bool("print", false, "print the address of the status page, do not start a browser")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Read(e.configPath)
	if err != nil {
		return err
	}
	base, err := apiBaseURL(cfg)
	if err != nil {
		return err
	}
	url := base + "/?lang=" + string(e.language())
	// The page is served by the running agent: say so now rather than
	// leave the browser with "connection refused".
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(cctx, http.MethodHead, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (start it: tposagent start, or run it: tposagent run)", localapi.ErrNotRunning, base)
	}
	resp.Body.Close()
	fmt.Fprintln(e.stdout, url)
	if *printOnly {
		return nil
	}
	cmd := browserCommand(url, e.getenv("BROWSER"))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("open the browser (%s): %w; open %s by hand", cmd.Path, err, url)
	}
	// A launcher (xdg-open, rundll32) returns at once; a browser named by
	// $BROWSER may keep running: wait a moment for a quick failure only.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("open the browser (%s): %w; open %s by hand", cmd.Path, err, url)
		}
	case <-time.After(2 * time.Second):
	}
	return nil
}

// browserCommand starts the default browser on url; $BROWSER (a command,
// as xdg-open also honours it) wins.
func browserCommand(url, browser string) *exec.Cmd {
	if f := strings.Fields(browser); len(f) > 0 {
		return exec.Command(f[0], append(f[1:], url)...)
	}
	return defaultBrowser(url)
}

func (e *env) getenv(k string) string {
	if e.lookupEnv != nil {
		v, _ := e.lookupEnv(k)
		return v
	}
	return os.Getenv(k)
}
