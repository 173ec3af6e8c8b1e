//go:build !windows

package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
)

// umask000 runs the agent under "umask 000", so that only the modes the
// code asks for protect its files.
var umask000 = []string{"sh", "-c", `umask 000; exec "$0" "$@"`}

func TestFilePermissions(t *testing.T) {
	f := newFixture(t, "", func(c *config.Config) { c.Log.MaxSize = 64 << 10 })
	f.mustStart(umask000...)
	testrig.WaitFor(t, "registration (license.json)", 20*time.Second, func() bool {
		st, err := f.status()
		return err == nil && st.Registered
	})
	if _, err := f.api().Enqueue(context.Background(), "/v1/special-codes", []byte(`{"integration_id":"perm-1","code":"İ"}`)); err != nil {
		t.Fatal(err)
	}
	// Enough log lines to rotate the 64 KiB log file once: each delivery
	// is a debug line.
	for i := 0; i < 3000; i++ {
		if _, err := os.Stat(filepath.Join(f.dataDir, "tposagent.log.1")); err == nil {
			break
		}
		if _, err := f.api().Enqueue(context.Background(), "/v1/special-codes", []byte(fmt.Sprintf(`{"integration_id":"perm-%d","code":"Ç"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	f.stop()

	st, err := os.Stat(f.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode != 0o700 {
		t.Errorf("data dir %s: mode %v, want 0700", f.dataDir, mode)
	}
	checked := []string{}
	for _, name := range []string{"outbox.db", "license.json", "tposagent.log", "tposagent.log.1", "api.addr"} {
		st, err := os.Stat(filepath.Join(f.dataDir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if mode := st.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("%s: mode %v, want owner-only (0600)", name, mode)
		}
		checked = append(checked, fmt.Sprintf("%s=%v", name, st.Mode().Perm()))
	}
	// And whatever else the agent wrote there.
	filepath.Walk(f.dataDir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want owner-only", path, info.Mode().Perm())
		}
		return nil
	})

	// The config the installer writes, also under umask 000.
	old := syscall.Umask(0)
	root := t.TempDir()
	cfgPath := filepath.Join(root, "etc", "config.toml")
	set := map[string]string{"data_dir": filepath.Join(root, "var", "data"),
		"tposl.url": "https://lisans.example.com/TPOSL", "tposl.username": tposlUser, "tposl.password": tposlPassword,
		"oduyo.base_url": "https://erp.example.com", "oduyo.api_key": oduyoAPIKey, "oduyo.username": oduyoUser,
		"oduyo.password": oduyoPassword, "store.tax_number": "1234567890", "api.token": apiToken, "device.port": "none",
		"device.fiscal_serial": "JI20012345",
	}
	res, err := installer.Bootstrap(installer.BootstrapOptions{ConfigPath: cfgPath, Set: set})
	syscall.Umask(old)
	if err != nil {
		t.Fatalf("installer.Bootstrap: %v", err)
	}
	if !strings.HasPrefix(res.DataDir, root) {
		t.Fatalf("installer.Bootstrap made its data dir outside the test's: %s", res.DataDir)
	}
	if host, _, err := net.SplitHostPort(res.Config.API.Listen); err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("the installer's api.listen %q is not loopback", res.Config.API.Listen)
	}
	for _, p := range []string{res.ConfigPath, res.DataDir} {
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if mode := st.Mode().Perm(); mode&0o077 != 0 {
			t.Errorf("%s written by the installer: mode %v, want owner-only", p, mode)
		}
		checked = append(checked, fmt.Sprintf("%s=%v", filepath.Base(p), st.Mode().Perm()))
	}
	t.Logf("RESULT permissions umask=000 datadir=%v %s", st.Mode().Perm(), strings.Join(checked, " "))
}

// TestSecretScan drives the agent through the paths that handle secrets
// (logins, re-logins after expiry, failures, dead letters, the CLI, doctor,
// status, metrics) and finally dumps its goroutines with SIGQUIT; the
// fixture's scan then looks for every secret and session id in all of it.
func TestSecretScan(t *testing.T) {
	f := newFixture(t, "", nil)
	// Sessions expire after a number of uses, so the agent logs in again
	// several times. The number is above what the outbox's 4 workers can
	// spend of a fresh session before a worker's retry on it arrives: a
	// fresh session refused is the sign of bad credentials (dead letter).
	f.oduyo.ExpireSessionsAfter(10)
	f.oduyo.Reject("scan-rejected")
	f.oduyo.FailNextLogin(1, oduyotest.Fault{Status: http.StatusInternalServerError})
	f.oduyo.FailNext(2, oduyotest.Fault{HTML: true, Status: http.StatusBadGateway})
	f.oduyo.FailNext(1, oduyotest.Fault{Malformed: true})
	f.tposl.SetCredentials(tposlUser, "not-the-configured-password") // the first registration is refused
	f.mustStart()
	ctx := context.Background()
	ids := []string{}
	for i := range 20 {
		id := fmt.Sprintf("scan-%02d", i)
		if _, err := f.api().Enqueue(ctx, "/v1/special-codes", []byte(`{"integration_id":"`+id+`","code":"Ü-`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if _, err := f.api().Enqueue(ctx, "/v1/special-codes", []byte(`{"integration_id":"scan-rejected","code":"x"}`)); err != nil {
		t.Fatal(err)
	}
	f.waitDelivered(ids, 30*time.Second)
	testrig.WaitFor(t, "the rejected record in the dead letters", 20*time.Second, func() bool {
		st, err := f.status()
		return err == nil && st.Outbox.Dead == 1
	})
	f.oduyo.ExpireSessions()
	f.tposl.SetCredentials(tposlUser, tposlPassword)

	// Everything a person or the POS program can read.
	for _, path := range []string{"/v1/status", "/v1/license", "/metrics", "/v1/outbox?state=dead", "/v1/outbox?state=pending"} {
		var raw []byte
		req, _ := http.NewRequest("GET", f.api().BaseURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw = make([]byte, 0, 4096)
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			raw = append(raw, buf[:n]...)
			if err != nil {
				break
			}
		}
		resp.Body.Close()
		f.record("GET "+path, raw)
	}
	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"license"}, {"outbox", "list"}, {"outbox", "dead"},
		{"doctor"}, {"kasa", "update", "--integration-id", "x", "--balance", "not-money"}, {"outbox", "retry", "999999"}} {
		out, err := f.cli(args...)
		if err != nil {
			f.record("error of "+strings.Join(args, " "), []byte(err.Error()))
		}
		if strings.TrimSpace(out) == "" {
			t.Errorf("tposagent %s printed nothing", strings.Join(args, " "))
		}
	}
	dead, _ := f.cli("outbox", "dead")
	if !strings.Contains(dead, "scan-rejected") {
		t.Errorf("outbox dead does not list the rejected record:\n%s", dead)
	}

	// A crash: SIGQUIT makes the Go runtime dump every goroutine.
	if err := f.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	err, ok := f.Wait(10 * time.Second)
	if !ok {
		t.Fatal("the agent did not exit within 10 s of SIGQUIT")
	}
	out := f.output()
	if err == nil || !strings.Contains(out, "SIGQUIT") || !strings.Contains(out, "goroutine ") {
		t.Fatalf("no goroutine dump after SIGQUIT (exit %v):\n%.2000s", err, out)
	}
	t.Logf("RESULT secret-scan-drive sessions=%d logins=%d deliveries=%d dump_bytes=%d",
		len(f.oduyo.Sessions()), f.oduyo.Logins(), len(f.oduyo.Delivered()), len(out))
	if len(f.oduyo.Sessions()) < 2 {
		t.Errorf("only %d session ids issued; the scan wants re-logins too", len(f.oduyo.Sessions()))
	}
}
