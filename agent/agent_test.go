package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

func testConfig(t *testing.T, tp *tposltest.Server, od *oduyotest.Server) *config.Config {
	c := config.Default()
	c.DataDir = filepath.Join(t.TempDir(), "data")
	c.Store.CompanyName = "Örnek Gıda A.Ş."
	c.TPOSL.URL, c.TPOSL.Username, c.TPOSL.Password = tp.URL(), "u", "tposl-pass-123"
	c.TPOSL.Interval = config.Duration{Duration: 50 * time.Millisecond} // below the config minimum: tests only
	c.NoFloors = true                                                   // so that Validate takes it
	c.Oduyo.BaseURL, c.Oduyo.Username = od.URL(), od.Username
	c.Oduyo.APIKey, c.Oduyo.Password = config.Secret(od.APIKey), config.Secret(od.Password)
	c.Device.Port, c.Device.FiscalSerial = "none", "JI20012345"
	c.API.Listen, c.API.Token = "127.0.0.1:0", "agent-test-token-0123456789"
	c.Log.File = "-"
	return &c
}

// start runs a.Run in a goroutine; stop cancels it and waits for it (at
// most 6 s: the stop deadline plus margin), also as a cleanup.
func start(t *testing.T, a *Agent) (stop func()) {
	t.Helper()
	return testrig.Run(t, "Run", 6*time.Second, a.Run)
}

func TestLicenceFollowsServerAndDecaysOffline(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	clk := clocktest.New(time.Now())
	tp.SetReturn(tposl.Return{Status: true, Aktif: 1, LisansStatus: 1})
	cfg := testConfig(t, tp, od)
	interval := cfg.TPOSL.Interval.Duration
	a, err := New(cfg, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, a)

	testrig.WaitFor(t, "licensed", 10*time.Second, func() bool { return a.License().State == tposl.Licensed })
	if l := a.License(); l.Source != tposl.SourceServer {
		t.Errorf("source %q, want server", l.Source)
	}
	// The server's answer changes: the next interval picks it up. Time
	// moves only when the test moves it: one interval per poll.
	calls := tp.Calls()
	tp.SetReturn(tposl.Return{Status: true, Aktif: 0})
	testrig.WaitFor(t, "inactive", 10*time.Second, func() bool {
		clk.Advance(interval)
		return a.License().State == tposl.Inactive
	})
	if n := tp.Calls() - calls; n < 1 {
		t.Errorf("%d registrations after the interval, want at least 1", n)
	}

	// The server goes away: the last answer holds, then decays to unknown.
	tp.SetReturn(tposl.Return{Status: true, Aktif: 1, LisansStatus: 1})
	testrig.WaitFor(t, "licensed again", 10*time.Second, func() bool {
		clk.Advance(interval)
		return a.License().State == tposl.Licensed
	})
	tp.SetFault(tposltest.Fault{Mode: tposltest.Down})
	// The agent keeps trying while the server is away, and a failure
	// leaves the last answer in place.
	testrig.WaitFor(t, "a failed registration", 10*time.Second, func() bool {
		clk.Advance(interval)
		return a.Status().LastRegistrationError != ""
	})
	if l := a.License(); l.State != tposl.Licensed {
		t.Errorf("after a failed registration: %s, want licensed (the last answer holds)", l.State)
	}
	// The till's clock moves on (no timer needs to fire for the decay).
	clk.Jump(3 * 24 * time.Hour)
	if l := a.License(); l.State != tposl.Licensed {
		t.Errorf("after 3 days offline: %s, want licensed (within grace)", l.State)
	}
	clk.Jump(5 * 24 * time.Hour)
	if l := a.License(); l.State != tposl.StateUnknown {
		t.Errorf("after 8 days offline: %s, want unknown (grace is 7 days)", l.State)
	}
	st := a.Status()
	if !st.Registered || st.License.State != tposl.StateUnknown {
		t.Errorf("status: registered=%v licence=%s", st.Registered, st.License.State)
	}
	stop()

	// A restart while the server is still down starts from the saved answer.
	clk.Jump(-8 * 24 * time.Hour)
	a2, err := New(cfg, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer a2.queue.Close()
	defer a2.listen.ln.Close()
	if l := a2.License(); l.State != tposl.Licensed || l.Source != tposl.SourceCache {
		t.Errorf("after restart: %s from %s, want licensed from cache", l.State, l.Source)
	}
}

func TestRegistersAgainWhenTheCashRegisterChanges(t *testing.T) {
	sim, err := devicetest.StartAny(devicetest.Options{FiscalSerial: "JI20012345"}) // a pty, else TCP
	if err != nil {
		t.Fatalf("simulated device: %v", err)
	}
	defer sim.Close()
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	tp.SetReturn(tposl.Return{Status: true, Aktif: 1, LisansStatus: 1, OnayFiscalSeriNo: "JI20012345"})
	cfg := testConfig(t, tp, od)
	cfg.TPOSL.Interval = config.Duration{Duration: time.Hour} // only the serial change may trigger it
	cfg.Device.Port, cfg.Device.FiscalSerial = sim.Port(), ""
	// The recheck's read waits out the gap since the first read in real
	// time: the floor keeps that short (the gap has its own tests in
	// package device).
	cfg.Device.ReopenGap = config.Duration{Duration: config.MinReopenGap}
	const recheck = 30 * time.Minute
	clk := clocktest.New(time.Now())
	a, err := New(cfg, Options{DeviceRecheck: recheck, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	testrig.WaitFor(t, "first registration", 10*time.Second, func() bool { return a.License().State == tposl.Licensed })
	if n := len(tp.Requests()); n != 1 {
		t.Errorf("%d registrations before the change, want 1", n)
	}
	sim.SetFiscalSerial("JI20099999")
	// The next re-read notices the new register: one recheck period per
	// poll, far less than the hour of the registration interval.
	testrig.WaitFor(t, "registration with the new serial", 10*time.Second, func() bool {
		clk.Advance(recheck)
		r := tp.Requests()
		return len(r) >= 2 && r[len(r)-1].YKFiscalSeriNo == "JI20099999"
	})
	// The server approved the old device: the new one is a mismatch.
	testrig.WaitFor(t, "mismatch", 10*time.Second, func() bool { return a.License().State == tposl.Mismatch })
}

func TestRegistrationWakesAnOfflineOutbox(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	cfg := testConfig(t, tp, od)
	cfg.TPOSL.Interval = config.Duration{Duration: 20 * time.Millisecond}
	cfg.Outbox.ReconnectJitter = config.Duration{}
	od.SetDown(true)
	// The probe backoff is an hour long: only the kick after a successful
	// registration can bring the queue back while the test moves the clock
	// one registration interval per poll (at most seconds of it).
	clk := clocktest.New(time.Now())
	a, err := New(cfg, Options{RetryBase: time.Hour, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	ctx := context.Background()
	if _, err := a.queue.Enqueue(ctx, outbox.Entry{Kind: outbox.KindSpecialCode, Key: "special_code:1", Payload: []byte(`{"integration_id":"1","code":"A"}`)}); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "offline", 10*time.Second, func() bool { st, _ := a.queue.Stats(); return st.Offline })
	od.SetDown(false)
	testrig.WaitFor(t, "delivery after the kick", 10*time.Second, func() bool {
		clk.Advance(cfg.TPOSL.Interval.Duration)
		return len(od.Delivered()) == 1
	})
}

func TestRunsWithoutServersConfigured(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	cfg := testConfig(t, tp, od)
	cfg.TPOSL.URL, cfg.Oduyo.BaseURL = "", ""
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a config without server URLs must be usable: %v", err)
	}
	if len(cfg.Warnings()) < 2 {
		t.Errorf("warnings %q: want one per missing server", cfg.Warnings())
	}
	a, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, a)
	ctx := context.Background()
	if _, err := a.queue.Enqueue(ctx, outbox.Entry{Kind: outbox.KindSpecialCode, Key: "special_code:1", Payload: []byte(`{"integration_id":"1","code":"A"}`)}); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "device read", 10*time.Second, func() bool { return a.Status().Device.FiscalSerial == "JI20012345" })
	st := a.Status()
	if st.License.State != tposl.StateUnknown || !strings.Contains(st.License.Message, "tposl.url") || st.Outbox.Pending != 1 {
		t.Errorf("status: licence %s %q, pending %d", st.License.State, st.License.Message, st.Outbox.Pending)
	}
	stop()
	if tp.Calls() != 0 || od.Requests() != 0 {
		t.Errorf("servers called: tposl %d, oduyo %d", tp.Calls(), od.Requests())
	}
}
