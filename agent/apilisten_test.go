package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/i18n"
	"github.com/tposagent/tposagent/internal/testrig"
)

// TestAgentWaitsForATakenPort: an agent started while another
// program holds its API port keeps running — logged, in its status
// warnings and in APIWaitFile for the CLI — and serves once the port is
// free; then the status says the port was taken, for a while. On the code
// before, New failed with "address already in use".
func TestAgentWaitsForATakenPort(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()
	cfg := testConfig(t, tp, od)
	cfg.API.Listen = squatter.Addr().String()
	var logs testrig.SyncBuffer
	a, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), ListenRetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("New with the port taken: %v", err)
	}
	stop := start(t, a)
	defer stop()
	has := func(ws []string, s string) bool {
		for _, w := range ws {
			if strings.Contains(w, s) {
				return true
			}
		}
		return false
	}
	testrig.WaitFor(t, "the status warning", 5*time.Second, func() bool {
		return has(a.Status().Warnings, APIPortWarning+" "+cfg.API.Listen)
	})
	if ws := a.Status().Warnings; !has(ws, "another program holds the port") {
		t.Errorf("warnings %q: want one saying another program holds the port", ws)
	}
	turkish := func(ws []string) {
		for _, w := range ws {
			if strings.Contains(w, "local API") && i18n.TR.Warning(w) == w {
				t.Errorf("no Turkish for the status warning %q", w)
			}
		}
	}
	turkish(a.Status().Warnings)
	wait, err := os.ReadFile(filepath.Join(cfg.DataDir, APIWaitFile))
	if err != nil || !strings.Contains(string(wait), "another program holds the port") {
		t.Errorf("%s: %q, %v", APIWaitFile, wait, err)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "held by another program") {
		t.Errorf("log: %s", l)
	}
	// Let a few tries fail, then free the port: the agent serves.
	testrig.WaitFor(t, "retries", 5*time.Second, func() bool {
		a.listen.mu.Lock()
		defer a.listen.mu.Unlock()
		return a.listen.failures >= 3
	})
	squatter.Close()
	c := &localapi.Client{BaseURL: "http://" + cfg.API.Listen, Token: cfg.API.Token.Reveal()}
	testrig.WaitFor(t, "the API on the freed port", 10*time.Second, func() bool {
		_, err := c.Status(context.Background())
		return err == nil
	})
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if has(st.Warnings, APIPortWarning) || !has(st.Warnings, "was taken from") {
		t.Errorf("warnings after the port was freed: %q", st.Warnings)
	}
	turkish(st.Warnings)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, APIWaitFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", APIWaitFile, err)
	}
	if a.Addr().String() != cfg.API.Listen {
		t.Errorf("Addr = %s, want %s", a.Addr(), cfg.API.Listen)
	}
}

// TestBadListenAddressFailsAtOnce: an api.listen that can never work (an
// invalid port) is an error from New, not a port to wait for.
func TestBadListenAddressFailsAtOnce(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	cfg := testConfig(t, tp, od)
	cfg.API.Listen = "127.0.0.1:99999"
	if a, err := New(cfg, Options{}); err == nil || !strings.Contains(err.Error(), "api.listen") {
		if a != nil {
			a.queue.Close()
		}
		t.Fatalf("New with %s: %v, want an error naming api.listen", cfg.API.Listen, err)
	}
}
