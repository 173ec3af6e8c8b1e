package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
)

// call does one request on the agent's local API.
func call(t *testing.T, a *Agent, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+a.Addr().String()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.cfg.API.Token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func metricsOf(t *testing.T, a *Agent) string {
	t.Helper()
	code, b := call(t, a, "GET", "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	return string(b)
}

// TestStatusSaysEnqueuesFail: a full queue makes every POST a 503; status
// and /metrics say so — how many, the last error, since when — and stop
// saying it once a record is stored again.
func TestStatusSaysEnqueuesFail(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	od.SetDown(true) // records stay queued
	cfg := testConfig(t, tp, od)
	cfg.Outbox.MaxSize = 32 << 10
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)

	var ids []uint64
	failures := 0
	var firstFailure time.Time
	for i := 0; failures < 3; i++ {
		if i > 1000 {
			t.Fatal("a 32 KiB queue took 1,000 records")
		}
		body := fmt.Sprintf(`{"integration_id":"c-%d","code":"K","description":%q}`, i, strings.Repeat("ş", 400))
		code, b := call(t, a, "POST", "/v1/special-codes", body)
		switch code {
		case http.StatusAccepted:
			var acc localapi.Accepted
			json.Unmarshal(b, &acc)
			ids = append(ids, acc.ID)
		case http.StatusServiceUnavailable:
			if failures == 0 {
				firstFailure = time.Now()
			}
			failures++
		default:
			t.Fatalf("enqueue %d: %d %s", i, code, b)
		}
	}
	st := a.Status()
	e := st.Outbox.Enqueue
	if e.Failures != uint64(failures) || !strings.Contains(e.LastError, "full") || e.FailingSince == nil || e.LastErrorAt == nil {
		t.Fatalf("status enqueue %+v, want %d failures, the error, since when", e, failures)
	}
	if d := e.FailingSince.Sub(firstFailure); d > time.Second || d < -time.Second {
		t.Errorf("failing since %v, the first failure was at %v", e.FailingSince, firstFailure)
	}
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "records cannot be stored since") {
		t.Errorf("status warnings %q do not say records cannot be stored", st.Warnings)
	}
	m := metricsOf(t, a)
	for _, want := range []string{
		fmt.Sprintf("tposagent_enqueue_failures_total %d\n", failures),
		fmt.Sprintf("tposagent_enqueue_failing_since_seconds %g\n", float64(e.FailingSince.Unix())),
		`tposagent_enqueue_last_error_info{error="`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Space again: the next record is stored, and "failing since" clears.
	if code, b := call(t, a, "DELETE", fmt.Sprintf("/v1/outbox/%d", ids[0]), ""); code != 200 {
		t.Fatalf("drop: %d %s", code, b)
	}
	if code, b := call(t, a, "POST", "/v1/special-codes", `{"integration_id":"after","code":"K"}`); code != http.StatusAccepted {
		t.Fatalf("enqueue after a drop: %d %s", code, b)
	}
	e = a.Status().Outbox.Enqueue
	if e.FailingSince != nil || e.Failures != uint64(failures) {
		t.Errorf("after a success: %+v, want the count kept and failing_since cleared", e)
	}
	if m := metricsOf(t, a); !strings.Contains(m, "tposagent_enqueue_failing_since_seconds 0\n") {
		t.Errorf("/metrics still says enqueues fail")
	}
}

// TestStatusSaysServerPauseAndDeviceError: a Retry-After pause of the
// server and a cash register that cannot be read are in status and in
// /metrics; the pause holds while registrations kick the outbox (a kick
// starts no probe during a pause, and no probe ends it: Retry-After is
// the server's word).
func TestStatusSaysServerPauseAndDeviceError(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	od.FailAlways(oduyotest.Fault{Status: 503, RetryAfter: "600"})
	cfg := testConfig(t, tp, od)
	cfg.Device.Port = "tcp://127.0.0.1:1" // nothing answers there
	cfg.Device.Timeout = config.Duration{Duration: 100 * time.Millisecond}
	cfg.Outbox.ReconnectJitter = config.Duration{}
	logs := &testrig.Buffer{}
	a, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	if code, b := call(t, a, "POST", "/v1/kasa", `{"integration_id":"p-1","note":"x"}`); code != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", code, b)
	}
	var st localapi.Status
	testrig.WaitFor(t, "a server pause and a device error", 10*time.Second, func() bool {
		st = a.Status()
		return st.Outbox.PausedUntil != nil && st.Device.Error != ""
	})
	// Registrations go on (tposl.interval is 50 ms here), each one kicks
	// the outbox; the old code probed on such a kick, and the probe's
	// success ended the pause and sent the record again at once.
	lists, regs := od.Lists(), tp.Calls()
	testrig.WaitFor(t, "a registration's kick during the pause", 10*time.Second, func() bool {
		return tp.Calls() >= regs+2 && (strings.Contains(logs.String(), "no probe during the server's pause") || od.Lists() > lists)
	})
	if n := od.Lists(); n != lists {
		t.Errorf("%d probes during the server's pause, want none", n-lists)
	}
	if n := od.Requests(); n != 1 {
		t.Errorf("%d record requests, want 1 (the pause holds)", n)
	}
	if now := a.Status().Outbox.PausedUntil; now == nil || !now.Equal(*st.Outbox.PausedUntil) {
		t.Errorf("paused until %v after registrations, want %v", now, st.Outbox.PausedUntil)
	}
	if d := time.Until(*st.Outbox.PausedUntil); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("paused until %v: want about 10 min from now", st.Outbox.PausedUntil)
	}
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "pause sending until") {
		t.Errorf("status warnings %q do not name the pause", st.Warnings)
	}
	if st.Device.ErrorSince == nil || time.Since(*st.Device.ErrorSince) > time.Minute {
		t.Errorf("device error since %v, want a recent time", st.Device.ErrorSince)
	}
	if st.Device.FiscalSerial != "JI20012345" {
		t.Errorf("the configured fiscal serial is still used: %+v", st.Device)
	}
	m := metricsOf(t, a)
	for _, want := range []string{
		fmt.Sprintf("tposagent_outbox_paused_until_seconds %g\n", float64(st.Outbox.PausedUntil.Unix())),
		"tposagent_device_ok 0\n",
		fmt.Sprintf("tposagent_device_error_since_seconds %g\n", float64(st.Device.ErrorSince.Unix())),
		`tposagent_device_error_info{error="`,
		"tposagent_api_connections ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, m)
		}
	}
}

// TestMetricLabelsAreSafe: an error text with quotes, backslashes and
// line breaks is one valid label value.
func TestMetricLabelsAreSafe(t *testing.T) {
	var b bytes.Buffer
	localapi.WriteMetrics(&b, localapi.Status{Device: localapi.Device{Error: "open \"COM3\":\r\n access\\denied\x01"}})
	var line string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, "tposagent_device_error_info{") {
			line = l
		}
	}
	if want := `tposagent_device_error_info{error="open \"COM3\": access\\denied"} 1`; line != want {
		t.Errorf("label line %q, want %q", line, want)
	}
}

// TestUnopenableOutboxDoesNotStopTheAgent: when the outbox file cannot be
// opened (a failing disk; here a directory at its path), the agent still
// starts — no crash loop under the service manager — and serves the
// licence; records get a 503 that says why, status warns, and once the
// file can be opened records are accepted and delivered with no restart.
func TestUnopenableOutboxDoesNotStopTheAgent(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	cfg := testConfig(t, tp, od)
	cfg.Outbox.ReconnectJitter = config.Duration{}
	bad := filepath.Join(cfg.DataDir, "outbox.db")
	if err := os.MkdirAll(filepath.Join(bad, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatalf("the agent did not start with an unopenable outbox: %v", err)
	}
	start(t, a)
	testrig.WaitFor(t, "licensed", 10*time.Second, func() bool { return a.License().State == license.Licensed })
	if code, b := call(t, a, "GET", "/v1/license", ""); code != http.StatusOK {
		t.Fatalf("licence while the outbox is closed: %d %s", code, b)
	}
	code, b := call(t, a, "POST", "/v1/kasa", `{"integration_id":"p-1","note":"x"}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(b), "cannot open the outbox file") {
		t.Fatalf("enqueue while the outbox is closed: %d %s, want 503 naming the file", code, b)
	}
	st := a.Status()
	if w := strings.Join(st.Warnings, "\n"); !strings.Contains(w, "records are refused until the outbox file opens") {
		t.Errorf("status warnings %q do not say records are refused", st.Warnings)
	}
	if !strings.Contains(st.Outbox.LastError, "cannot open the outbox file") {
		t.Errorf("status outbox error %q", st.Outbox.LastError)
	}

	if err := os.RemoveAll(bad); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "a record accepted once the file opens", 10*time.Second, func() bool {
		code, _ := call(t, a, "POST", "/v1/kasa", `{"integration_id":"p-1","note":"x"}`)
		return code == http.StatusAccepted
	})
	testrig.WaitFor(t, "the record delivered", 10*time.Second, func() bool { return len(od.Delivered()) == 1 })
	if w := strings.Join(a.Status().Warnings, "\n"); strings.Contains(w, "records are refused") {
		t.Errorf("status still warns after the file opened: %q", w)
	}
}

// TestIdempotencyConflictIsNotAStorageFailure: a key reused with another
// body is the caller's mistake (409); status must not say that records
// cannot be stored.
func TestIdempotencyConflictIsNotAStorageFailure(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	a, err := New(testConfig(t, tp, od), Options{})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	post := func(body string) int {
		req, _ := http.NewRequest("POST", "http://"+a.Addr().String()+"/v1/special-codes", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.cfg.API.Token.Reveal())
		req.Header.Set("Idempotency-Key", "order-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(`{"integration_id":"c-1","code":"K"}`); code != http.StatusAccepted {
		t.Fatalf("first: %d", code)
	}
	if code := post(`{"integration_id":"c-1","code":"OTHER"}`); code != http.StatusConflict {
		t.Fatalf("same key, other body: %d, want 409", code)
	}
	e := a.Status().Outbox.Enqueue
	if e.Failures != 0 || e.FailingSince != nil {
		t.Errorf("a 409 counted as a storage failure: %+v", e)
	}
	if w := strings.Join(a.Status().Warnings, "\n"); strings.Contains(w, "cannot be stored") {
		t.Errorf("status warns after a 409: %q", w)
	}
}
