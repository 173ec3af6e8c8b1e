package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/internal/till"
)

// The secrets every fixture of the run configures; the scans look for them.
const (
	tposlUser     = "chaos-kasa"
	tposlPassword = "chaos-tposl-Şifre-5521"
	oduyoUser     = "chaos-oduyo"
	oduyoAPIKey   = "chaos-apikey-9d2e7f40"
	oduyoPassword = "chaos-Gizli-Şifre-4419"
	apiToken      = "chaos-token-a41c7e9d03b25f68"
)

// agentBin is the real tposagent, built once.
var agentBin string

// scanTotals sums what the fixtures' secret scans read.
var scanTotals struct {
	sync.Mutex
	texts, bytes, found int
}

func TestMain(m *testing.M) {
	bin, cleanup, err := till.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = bin
	code := m.Run()
	scanTotals.Lock()
	fmt.Printf("RESULT secret-scan texts=%d bytes=%d found=%d\n", scanTotals.texts, scanTotals.bytes, scanTotals.found)
	scanTotals.Unlock()
	cleanup()
	os.Exit(code)
}

// fixture is one till: fake servers, a config, and the agent process
// (run by the shared real-binary harness, internal/till).
type fixture struct {
	*till.Till
	t       *testing.T
	dir     string // holds config.toml
	dataDir string // absolute
	cfg     config.Config
	cfgPath string
	tposl   *tposltest.Server
	oduyo   *oduyotest.Server

	mu    sync.Mutex
	texts map[string][]byte // everything the agent answered or the CLI printed, for the secret scan
}

// newFixture makes a till whose data dir is dataDir ("" for <tmp>/data);
// edit changes the config before it is written.
func newFixture(t *testing.T, dataDir string, edit func(*config.Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), texts: map[string][]byte{}}
	if dataDir == "" {
		dataDir = filepath.Join(f.dir, "data")
	}
	f.dataDir = dataDir
	// Registered first, so it runs last: after the process is gone.
	t.Cleanup(f.scanSecrets)
	f.tposl = tposltest.NewServer()
	t.Cleanup(f.tposl.Close)
	f.oduyo = oduyotest.NewServer(oduyotest.WithCredentials(oduyoAPIKey, oduyoUser, oduyoPassword))
	t.Cleanup(f.oduyo.Close)
	now := time.Now()
	f.tposl.SetCredentials(tposlUser, tposlPassword)
	f.tposl.SetReturn(tposl.Return{Status: true, Aktif: 1, GMP3Status: 1, GMP3ExpDate: now.AddDate(0, 0, 50).Format("2006-01-02"),
		DemoLisansGun: 30, DemoBasTarih: now.AddDate(0, 0, -10).Format("2006-01-02"), OnayFiscalSeriNo: "JI20012345"})

	c := till.Config(dataDir, till.Servers{TPOSLURL: f.tposl.URL(), TPOSLUser: tposlUser, TPOSLPassword: tposlPassword,
		OduyoURL: f.oduyo.URL(), OduyoUser: oduyoUser, OduyoAPIKey: oduyoAPIKey, OduyoPassword: oduyoPassword, Token: apiToken})
	c.Store.PosNo = 3
	if edit != nil {
		edit(&c)
	}
	f.cfg = c
	f.cfgPath = filepath.Join(f.dir, "config.toml")
	tl, err := till.New(&c, till.Options{Binary: agentBin, ConfigPath: f.cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	f.Till = tl
	t.Cleanup(f.kill)
	return f
}

func (f *fixture) writeConfig() {
	f.t.Helper()
	if err := f.WriteConfig(&f.cfg); err != nil {
		f.t.Fatal(err)
	}
}

// launch starts the agent without waiting for it.
func (f *fixture) launch(wrap ...string) {
	f.t.Helper()
	if err := f.Launch(wrap...); err != nil {
		f.t.Fatal(err)
	}
}

// start runs the agent and waits until its local API answers; it returns
// an error instead of failing so that goroutines may call it.
func (f *fixture) start(wrap ...string) error {
	_, err := f.Start(context.Background(), 15*time.Second, wrap...)
	return err
}

func (f *fixture) mustStart(wrap ...string) {
	f.t.Helper()
	if err := f.start(wrap...); err != nil {
		f.t.Fatal(err)
	}
}

// api is the client of the running agent.
func (f *fixture) api() *localapi.Client { return f.API() }

// kill sends SIGKILL and waits for the exit; the run's output is kept.
func (f *fixture) kill() { f.Kill() }

// stop asks the agent to stop as its service manager does and waits.
func (f *fixture) stop() {
	f.t.Helper()
	if _, err := f.Stop(10 * time.Second); err != nil {
		f.t.Errorf("agent stop: %v", err)
	}
}

// output is the current (or last) run's output.
func (f *fixture) output() string { return f.Output() }

// record keeps a text (an error, a status answer) for the secret scan.
func (f *fixture) record(name string, b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.texts[name] = append(f.texts[name], b...)
}

// cli runs a client command of the agent against this fixture's config.
func (f *fixture) cli(args ...string) (string, error) {
	out, err := f.CLI(args...)
	f.record("tposagent "+strings.Join(args, " "), []byte(out))
	return out, err
}

// status reads /v1/status and keeps the raw answer for the scan.
func (f *fixture) status() (localapi.Status, error) {
	s, raw, err := f.Status(context.Background())
	if err != nil {
		f.record("status error", []byte(err.Error()))
		return s, err
	}
	f.record("GET /v1/status", raw)
	return s, nil
}

// post enqueues a column object; it returns the HTTP status (0 when the
// request did not get an answer) and the error body.
func post(ctx context.Context, hc *http.Client, c *localapi.Client, path string, col any) (int, string, error) {
	b, err := json.Marshal(col)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.BaseURL+path, bytes.NewReader(b))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, string(body), nil
}

// waitDrained waits until nothing is pending or in flight.
func (f *fixture) waitDrained(timeout time.Duration) localapi.Status {
	f.t.Helper()
	var last localapi.Status
	testrig.WaitFor(f.t, "the queue to drain", timeout, func() bool {
		s, err := f.status()
		last = s
		return err == nil && s.Outbox.Pending == 0 && s.Outbox.InFlight == 0
	})
	return last
}

// waitDelivered waits until the server has a record of every id; on a
// timeout it fails with the agent's status and its non-debug log lines.
func (f *fixture) waitDelivered(ids []string, timeout time.Duration) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := map[string]bool{}
		for _, d := range f.oduyo.Delivered() {
			got[d.IntegrationID] = true
		}
		missing := 0
		for _, id := range ids {
			if !got[id] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			st, err := f.status()
			b, _ := json.MarshalIndent(st, "", " ")
			f.t.Fatalf("after %v, %d of %d records not delivered; status (%v):\n%s\nlog:\n%s", timeout, missing, len(ids), err, b, f.infoLog())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// infoLog is the current run's output without debug lines.
func (f *fixture) infoLog() string {
	var keep []string
	for _, l := range strings.Split(f.output(), "\n") {
		if !strings.Contains(l, "level=DEBUG") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// checkBolt opens the outbox file read-only (the agent must be stopped)
// and runs bbolt's consistency check.
func checkBolt(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
}

// secrets are the configured secrets and the session ids issued so far.
func (f *fixture) secrets() []string {
	s := []string{tposlPassword, oduyoAPIKey, oduyoPassword, apiToken}
	return append(s, f.oduyo.Sessions()...)
}

// scanSecrets fails if a secret appears in anything the agent printed,
// answered or wrote (the config file holds them by design).
func (f *fixture) scanSecrets() {
	f.kill()
	f.mu.Lock()
	texts := make(map[string][]byte, len(f.texts))
	for k, v := range f.texts {
		texts[k] = v
	}
	f.mu.Unlock()
	for i, out := range f.Outputs() {
		texts[fmt.Sprintf("agent output, run %d", i+1)] = out
	}
	filepath.Walk(f.dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && path != f.cfgPath {
			if b, err := os.ReadFile(path); err == nil {
				texts[path] = b
			}
		}
		return nil
	})
	if !strings.HasPrefix(f.dataDir, f.dir) {
		filepath.Walk(f.dataDir, func(path string, info os.FileInfo, err error) error {
			if err == nil && info.Mode().IsRegular() {
				if b, err := os.ReadFile(path); err == nil {
					texts[path] = b
				}
			}
			return nil
		})
	}
	n, found := 0, 0
	for name, b := range texts {
		n += len(b)
		for _, s := range f.secrets() {
			if s != "" && bytes.Contains(b, []byte(s)) {
				found++
				f.t.Errorf("secret %q… found in %s", s[:4], name)
			}
		}
	}
	f.t.Logf("secret scan: %d texts, %d bytes, %d secrets (%d session ids): %d found", len(texts), n, len(f.secrets()), len(f.oduyo.Sessions()), found)
	scanTotals.Lock()
	scanTotals.texts += len(texts)
	scanTotals.bytes += n
	scanTotals.found += found
	scanTotals.Unlock()
}

// envInt reads a positive integer from the environment.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}
