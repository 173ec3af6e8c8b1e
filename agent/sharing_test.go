package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
)

// TestFreshPOSReportKeepsDeviceClosed: with a POS report younger than
// device.pos_report_max_age the agent never opens the device — not at
// start, not for the registration a new report asks for, not on the
// recheck interval, not after a restart — and registers with the POS's
// identity. Status shows the report's port and age. The code before opened
// the ÖKC at every start and registration.
func TestFreshPOSReportKeepsDeviceClosed(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	tp.SetReturn(tposl.Return{Status: true, Aktif: 1, LisansStatus: 1})
	// A pseudo-terminal where there are some, else TCP.
	sim, err := devicetest.StartAny(devicetest.Options{FiscalSerial: "JI20099999"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := testConfig(t, tp, od)
	cfg.Device.Port, cfg.Device.FiscalSerial = sim.Port(), ""
	clk := clocktest.New(time.Now())

	// The POS reported in an earlier run of the agent.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writePOSReport(filepath.Join(cfg.DataDir, POSDeviceFile), device.Identity{FiscalSerial: "JI20012345", Brand: "HUGIN", Port: sim.Port(), ReadAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	run := func() {
		a, err := New(cfg, Options{Clock: clk, DeviceRecheck: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		calls := tp.Calls()
		stop := start(t, a)
		testrig.WaitFor(t, "a registration", 10*time.Second, func() bool { return tp.Calls() > calls })
		// A new report asks for a registration, and the recheck interval
		// passes several times: still no read.
		clk.Advance(RegisterGap)
		code, b := call(t, a, http.MethodPut, "/v1/device", `{"fiscal_serial":"JI20054321","port":"`+sim.Port()+`"}`)
		if code != http.StatusOK {
			t.Fatalf("PUT: %d %s", code, b)
		}
		testrig.WaitFor(t, "the registration of the new report", 10*time.Second, func() bool {
			clk.Advance(time.Minute)
			r := tp.Requests()
			return len(r) > 0 && r[len(r)-1].YKFiscalSeriNo == "JI20054321"
		})
		st := a.Status()
		pos := st.Device.Sources["pos"]
		if st.Device.Source != "pos" || pos.Port != sim.Port() || pos.AgeS == nil || !pos.Fresh || st.Device.NotOpened == "" {
			t.Errorf("status device %+v", st.Device)
		}
		code, b = call(t, a, http.MethodGet, "/v1/device", "")
		var d localapi.Device
		if err := json.Unmarshal(b, &d); code != http.StatusOK || err != nil || d.Sources["pos"].Port != sim.Port() || d.Sources["pos"].AgeS == nil {
			t.Errorf("GET /v1/device: %d %s", code, b)
		}
		stop()
		if n, s := len(sim.Received()), len(sim.Sessions()); n != 0 || s != 0 {
			t.Fatalf("the device got %d bytes in %d connections while the POS's report was fresh", n, s)
		}
	}
	run()
	run() // a restart: the report is read back from the data dir
}

// TestOldPOSReportPortAsked: once the POS's report is older than
// pos_report_max_age the agent reads the device again — on the port the
// POS named, without scanning.
func TestOldPOSReportPortAsked(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	sim, err := devicetest.Start(devicetest.Options{Transport: devicetest.TCP, FiscalSerial: "JI20012345"})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	cfg := testConfig(t, tp, od)
	cfg.Device.Port, cfg.Device.FiscalSerial, cfg.Device.Scan = "auto", "", "usb"
	clk := clocktest.New(time.Now())
	// The POS reported 8 days ago.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old := device.Identity{FiscalSerial: "JI20012345", Port: sim.Port(), ReadAt: clk.Now().Add(-cfg.Device.POSReportMaxAge.Duration - 24*time.Hour)}
	if err := writePOSReport(filepath.Join(cfg.DataDir, POSDeviceFile), old); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	testrig.WaitFor(t, "a device read on the POS's port", 10*time.Second, func() bool {
		return a.Device().Sources["device"].FiscalSerial == "JI20012345"
	})
	if sim.Requests() == 0 {
		t.Fatal("the POS's port was not asked")
	}
}

// TestDeviceReportsCoalesced: 20 s of PUT /v1/device,
// a new fiscal serial in each, make at most one registration a minute
// (RegisterGap), the latest identity wins, and every PUT answers at once.
// The code before registered on every change (1,021 registrations in
// 20 s).
func TestDeviceReportsCoalesced(t *testing.T) {
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	tp.SetReturn(tposl.Return{Status: true, Aktif: 1, LisansStatus: 1})
	cfg := testConfig(t, tp, od)
	cfg.Device.FiscalSerial = ""
	cfg.TPOSL.Interval = config.Default().TPOSL.Interval // registrations here come from the reports alone
	clk := clocktest.New(time.Now())
	a, err := New(cfg, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	start(t, a)
	put := func(serial string) time.Duration {
		t0 := time.Now()
		code, b := call(t, a, http.MethodPut, "/v1/device", `{"fiscal_serial":"`+serial+`"}`)
		if code != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", serial, code, b)
		}
		return time.Since(t0)
	}
	put("JI20000000")
	testrig.WaitFor(t, "the first registration", 10*time.Second, func() bool { return tp.Calls() == 1 })
	// 1,000 PUTs, 20 ms apart on the agent's clock: 20 s.
	var slowest time.Duration
	last := ""
	for i := 1; i <= 1000; i++ {
		last = fmt.Sprintf("JI2%07d", i)
		slowest = max(slowest, put(last))
		clk.Advance(20 * time.Millisecond)
	}
	if n := tp.Calls(); n > 1 {
		t.Errorf("%d registrations in 20 s of changing reports, want 1 (the first; the next waits for the minute)", n)
	}
	if slowest > time.Second {
		t.Errorf("slowest PUT took %v", slowest)
	}
	// The minute passes: one registration, with the latest identity.
	testrig.WaitFor(t, "the coalesced registration", 10*time.Second, func() bool {
		clk.Advance(time.Second)
		return tp.Calls() >= 2
	})
	r := tp.Requests()
	if got := r[len(r)-1].YKFiscalSeriNo; got != last {
		t.Errorf("registered %s, want the latest report %s", got, last)
	}
	if n := tp.Calls(); n != 2 {
		t.Errorf("%d registrations after the minute, want 2", n)
	}
	var d localapi.Device
	_, b := call(t, a, http.MethodGet, "/v1/device", "")
	if err := json.Unmarshal(b, &d); err != nil || d.FiscalSerial != last {
		t.Errorf("GET /v1/device: %s %v", b, err)
	}
	t.Logf("RESULT puts=1001 registrations=%d slowest_put=%v", tp.Calls(), slowest.Round(time.Microsecond))
}
