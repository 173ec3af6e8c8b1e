// Package till runs the real tposagent binary as a subprocess, the way a
// till runs it: it writes the config, starts `tposagent run`, waits for
// the local API, polls the status, keeps everything the process printed,
// and stops or kills it. The end-to-end tests, the proof suites
// (internal/proof/...) and `tposagent demo` all drive the agent through
// it, so there is one harness to trust.
//
// It links no test framework: the demo ships it. It must not import the
// proof suites or anything under cmd.
package till

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/internal/config"
)

// Till is one agent installation: a config file, a data dir, and at most
// one running agent process. Its methods are safe for concurrent use.
type Till struct {
	bin     string
	cfgPath string
	dataDir string
	token   string
	env     []string
	log     io.Writer // a copy of every run's output (optional)
	child   bool

	mu      sync.Mutex
	logFile string
	proc    *proc
	exited  chan error
	out     *syncBuffer // the current (or last) run's output
	runs    int
	outputs [][]byte // every finished run's output
	client  *localapi.Client
	// listen is the API's configured address when it names a port (not
	// 0): the agent is found there even when it cannot write api.addr
	// (a full disk).
	listen string
}

// Options configure New.
type Options struct {
	Binary string // the tposagent executable
	// ConfigPath is where the config is written (0600).
	ConfigPath string
	// Env is the agent's environment; nil means this process's environment
	// without TPOSAGENT_* variables (so that a tester's overrides do not leak
	// into the agent).
	Env []string
	// Log, if set, receives a copy of everything the agent prints.
	Log io.Writer
	// Child runs the agent as a plain child process on Windows too, not as
	// a temporary service (the demo registers nothing on a till); Stop then
	// kills it there.
	Child bool
}

// New writes cfg to opts.ConfigPath and returns the till; nothing runs yet.
func New(cfg *config.Config, opts Options) (*Till, error) {
	t := &Till{bin: opts.Binary, cfgPath: opts.ConfigPath, env: opts.Env, log: opts.Log, child: opts.Child}
	if t.env == nil {
		t.env = CleanEnv()
	}
	if err := t.WriteConfig(cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// CleanEnv is this process's environment without TPOSAGENT_* variables.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TPOSAGENT_") {
			env = append(env, kv)
		}
	}
	return env
}

// WriteConfig replaces the config file; a running agent reads it at its
// next start.
func (t *Till) WriteConfig(cfg *config.Config) error {
	if err := os.WriteFile(t.cfgPath, config.Encode(cfg), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	resolved := *cfg
	resolved.Path = t.cfgPath
	resolved.Resolve()
	t.mu.Lock()
	if cfg.NoFloors && !slices.Contains(t.env, config.NoFloorsEnv+"=1") {
		// A test's config below the floors (a registration every 2 s):
		// the agent accepts it only with the test-only override.
		t.env = append(slices.Clip(t.env), config.NoFloorsEnv+"=1")
	}
	t.dataDir, t.token, t.logFile = resolved.DataDir, cfg.API.Token.Reveal(), resolved.LogFile()
	t.listen = ""
	if _, port, err := net.SplitHostPort(cfg.API.Listen); err == nil && port != "0" {
		t.listen = cfg.API.Listen
	}
	t.mu.Unlock()
	return nil
}

// ConfigPath is the config file's path.
func (t *Till) ConfigPath() string { return t.cfgPath }

// DataDir is the agent's data dir (absolute).
func (t *Till) DataDir() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dataDir
}

// Launch starts the agent without waiting for it, as its service manager
// does: `tposagent run --config …` on Unix; on Windows `run --service` as
// a temporary service of the service control manager, so that Stop is the
// manager's Stop request (a child process where services cannot be
// created, or with Options.Child). wrap, if given, is a command line the
// agent's is appended to (e.g. strace; Unix only).
func (t *Till) Launch(wrap ...string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.proc != nil {
		return errors.New("till: the agent is already running")
	}
	if err := os.Remove(filepath.Join(t.dataDir, agent.APIAddrFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale %s: %w", agent.APIAddrFile, err)
	}
	buf := &syncBuffer{}
	var w io.Writer = buf
	if t.log != nil {
		w = io.MultiWriter(buf, t.log)
	}
	// A Windows service gets the service manager's environment, not ours
	// (wine's manager has no per-service Environment either), so an agent
	// that needs the test-only floor override runs as a child process.
	child := t.child || runtime.GOOS == "windows" && slices.Contains(t.env, config.NoFloorsEnv+"=1")
	p, err := startProc(procOptions{bin: t.bin, cfgPath: t.cfgPath, logFile: t.logFile, out: w, env: t.env, wrap: wrap, child: child})
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	t.proc, t.exited, t.out, t.client = p, p.exited, buf, nil
	t.runs++
	return nil
}

// Start launches the agent and waits until its local API answers (at most
// timeout); it returns how long that took.
func (t *Till) Start(ctx context.Context, timeout time.Duration, wrap ...string) (time.Duration, error) {
	t0 := time.Now()
	if err := t.Launch(wrap...); err != nil {
		return 0, err
	}
	if err := t.WaitAPI(ctx, timeout); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// WaitAPI waits until the launched agent's local API answers (at most
// timeout); after it, API returns its client.
func (t *Till) WaitAPI(ctx context.Context, timeout time.Duration) error {
	t.mu.Lock()
	exited, out, dataDir, token, listen := t.exited, t.out, t.dataDir, t.token, t.listen
	running := t.proc != nil
	t.mu.Unlock()
	if !running {
		return errors.New("till: the agent is not running")
	}
	addrFile := filepath.Join(dataDir, agent.APIAddrFile)
	deadline := time.Now().Add(timeout)
	for {
		// The agent writes the file atomically, ending in a newline; a
		// configured port needs no file.
		addr := listen
		if b, err := os.ReadFile(addrFile); addr == "" && err == nil && bytes.HasSuffix(b, []byte("\n")) {
			addr = strings.TrimSpace(string(b))
		}
		if addr != "" {
			c := &localapi.Client{BaseURL: localapi.BaseURLFor(addr), Token: token,
				HTTP: &http.Client{Timeout: 5 * time.Second}}
			if _, err := c.Status(ctx); err == nil {
				t.mu.Lock()
				t.client = c
				t.mu.Unlock()
				return nil
			}
		}
		select {
		case err := <-exited:
			exited <- err // Wait, Kill and Stop read it again
			return fmt.Errorf("the agent exited at start (%v):\n%s", err, out)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the local API did not answer within %v:\n%s", timeout, out)
		}
	}
}

// Running reports whether an agent process is up.
func (t *Till) Running() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.proc != nil
}

// PID is the running agent's process id (0 when none runs).
func (t *Till) PID() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.proc == nil {
		return 0
	}
	return t.proc.pid()
}

// Signal sends sig to the running agent (Unix; Windows knows only Kill).
func (t *Till) Signal(sig os.Signal) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.proc == nil {
		return errors.New("till: the agent is not running")
	}
	p, err := os.FindProcess(t.proc.pid())
	if err != nil {
		return err
	}
	return p.Signal(sig)
}

// take detaches the running process, if any, from the till.
func (t *Till) take() (*proc, chan error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, exited := t.proc, t.exited
	t.proc, t.client = nil, nil
	return p, exited
}

// Kill ends the agent at once (SIGKILL; TerminateProcess on Windows), as a
// crash or a power cut does, and waits for the exit.
func (t *Till) Kill() {
	p, exited := t.take()
	if p == nil {
		return
	}
	p.kill()
	<-exited
	t.finishRun()
}

// ErrCannotInterrupt: the agent runs where nothing can ask it to stop (on
// Windows outside the service manager), so Stop killed it.
var ErrCannotInterrupt = errors.New("cannot ask the agent to stop")

// Stop asks the agent to stop as its service manager does (SIGTERM; the
// Windows service manager's Stop request) and waits up to timeout; past
// it, the agent is killed and an error says so. It returns the agent's
// exit error and how long the stop took.
func (t *Till) Stop(timeout time.Duration) (time.Duration, error) {
	p, exited := t.take()
	if p == nil {
		return 0, nil
	}
	defer t.finishRun()
	t0 := time.Now()
	if err := p.stop(); err != nil {
		p.kill()
		<-exited
		return time.Since(t0), fmt.Errorf("%w: %w (killed)", ErrCannotInterrupt, err)
	}
	select {
	case err := <-exited:
		return time.Since(t0), err
	case <-time.After(timeout):
		p.kill()
		<-exited
		return time.Since(t0), fmt.Errorf("the agent did not stop within %v of a stop request; killed", timeout)
	}
}

// Wait waits up to timeout for an agent expected to exit by itself; ok is
// false if it is still running.
func (t *Till) Wait(timeout time.Duration) (err error, ok bool) {
	t.mu.Lock()
	exited := t.exited
	running := t.proc != nil
	t.mu.Unlock()
	if !running {
		return nil, true
	}
	select {
	case err := <-exited:
		t.take()
		t.finishRun()
		return err, true
	case <-time.After(timeout):
		return nil, false
	}
}

func (t *Till) finishRun() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.out != nil {
		t.outputs = append(t.outputs, t.out.Bytes())
	}
}

// API is the client of the running agent's local API (nil before Start).
func (t *Till) API() *localapi.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.client
}

// Output is what the current (or last) run printed.
func (t *Till) Output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.proc != nil {
		t.proc.flush()
	}
	if t.out == nil {
		return ""
	}
	return t.out.String()
}

// Outputs is what every finished run printed, in order.
func (t *Till) Outputs() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([][]byte(nil), t.outputs...)
}

// Runs is how many times the agent was launched.
func (t *Till) Runs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.runs
}

// CLI runs `tposagent --config <this till's config> args…` and returns its
// combined output.
func (t *Till) CLI(args ...string) (string, error) {
	// The flag goes first: "outbox dead --config F" would stop parsing at "dead".
	cmd := exec.Command(t.bin, append([]string{"--config", t.cfgPath}, args...)...)
	cmd.Env = t.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Status reads GET /v1/status; raw is the answer as sent.
func (t *Till) Status(ctx context.Context) (s localapi.Status, raw []byte, err error) {
	c := t.API()
	if c == nil {
		return s, nil, errors.New("till: the agent is not running")
	}
	var m json.RawMessage
	if err := c.Do(ctx, "GET", "/v1/status", nil, &m); err != nil {
		return s, nil, err
	}
	return s, m, json.Unmarshal(m, &s)
}

// WaitStatus polls the status every interval until cond holds, ctx ends
// or timeout passes; it returns the last status read.
func (t *Till) WaitStatus(ctx context.Context, timeout, interval time.Duration, cond func(localapi.Status) bool) (localapi.Status, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, _, err := t.Status(ctx)
		if err == nil && cond(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("the condition did not hold within %v", timeout)
			}
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }
