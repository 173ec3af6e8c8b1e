package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/device/gmp3"
	"github.com/tposagent/tposagent/installer"
	"github.com/tposagent/tposagent/internal/testrig"
)

// registeredWith waits for a registration and returns its fiscal serial
// and POS serial.
func (f *fixture) registeredWith(after int) (fiscal, pos string) {
	f.t.Helper()
	testrig.WaitFor(f.t, "a registration", 15*time.Second, func() bool { return len(f.tposl.Requests()) > after })
	p := f.tposl.Requests()[len(f.tposl.Requests())-1]
	return p.YKFiscalSeriNo, p.PosSeriNo
}

// TestE2EDeviceRegistersWithFiscalIDRead: the real binary reads the fiscal
// id from the simulated ÖKC (a T300 one, found by protocol auto after the
// other dialects are refused) and registers with it.
func TestE2EDeviceRegistersWithFiscalIDRead(t *testing.T) {
	f := newFixtureWith(t, &devicetest.Options{FiscalSerial: "FT40050248", Dialect: gmp3.T300})
	f.start()
	fiscal, _ := f.registeredWith(0)
	if fiscal != "FT40050248" {
		t.Fatalf("registered with %q, want the device's FT40050248", fiscal)
	}
	st, err := f.client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d := st.Device
	if d.Source != "device" || d.Protocol != "t300" || d.Port != f.sim.Port() || d.Conflict {
		t.Fatalf("status device %+v", d)
	}
	if len(d.Sources) != 4 || d.Sources["device"].FiscalSerial != "FT40050248" || d.Sources["device"].AgeS == nil {
		t.Fatalf("sources %+v", d.Sources)
	}
	// Never a pairing or fiscal command: only ECHO requests, ACK and NAK.
	for _, typ := range f.sim.Types() {
		if typ != gmp3.TypeEchoRequest {
			t.Fatalf("the agent sent message type %06X", typ)
		}
	}
	// The last read's bytes are kept for a support ticket, replayable.
	tr, err := os.Open(filepath.Join(f.DataDir(), agent.DeviceTraceFile))
	if err != nil {
		t.Fatal(err)
	}
	events, comments, err := device.ReadTrace(tr)
	tr.Close()
	if err != nil || len(events) < 3 || !strings.Contains(strings.Join(comments, "\n"), "answered: fiscal id FT40050248") {
		t.Fatalf("kept trace: %d events, %q, %v", len(events), comments, err)
	}
	t.Logf("RESULT e2e_device_read fiscal=%s protocol=%s requests=%d trace_events=%d", fiscal, d.Protocol, f.sim.Requests(), len(events))
	purgeKnowsEveryFile(t, f.DataDir())
}

// purgeKnowsEveryFile: every file the running agent made in its data dir
// is one that "uninstall --purge" deletes (a file it does not know keeps
// the data dir on disk after a purge).
func purgeKnowsEveryFile(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !installer.AgentFile(e.Name()) {
			t.Errorf("the agent made %s in its data dir, but uninstall --purge would keep it (installer.AgentFile)", e.Name())
		}
	}
}

// TestPurgeKnowsTheAgentsFiles: the data-dir file names the agent declares
// are all ones "uninstall --purge" removes, with their atomic-write
// temporaries.
func TestPurgeKnowsTheAgentsFiles(t *testing.T) {
	var names []string
	for _, name := range []string{agent.DeviceTraceFile, agent.POSDeviceFile, agent.APIAddrFile, agent.APIWaitFile, device.CacheFile, "license.json", "outbox.db.state"} {
		names = append(names, name, "."+name+".tmp-12345") // written by internal/atomicfile
	}
	for _, n := range append(names, "outbox.db", "outbox.db.lock", "tposagent.log") {
		if !installer.AgentFile(n) {
			t.Errorf("installer.AgentFile(%q) = false: uninstall --purge would leave it", n)
		}
	}
}

// TestE2EPOSReportsIdentity: with device.port = "none" and no fiscal serial
// in the config the agent does not register; after PUT /v1/device (through
// `tposagent device set`) it registers with the POS's identity, POS_SERI_NO
// from its ecr_serial. Bad input is a 400 and changes nothing; the report
// survives a restart.
func TestE2EPOSReportsIdentity(t *testing.T) {
	f := newFixtureWith(t, nil)
	f.start()
	ctx := context.Background()
	st, err := f.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Device.Source != "none" || st.Device.FiscalSerial != "" {
		t.Fatalf("before the report: %+v", st.Device)
	}
	testrig.WaitFor(t, "the registration error", 10*time.Second, func() bool {
		st, err := f.client.Status(ctx)
		return err == nil && strings.Contains(st.LastRegistrationError, "PUT /v1/device")
	})
	if n := len(f.tposl.Requests()); n != 0 {
		t.Fatalf("%d registrations without a fiscal serial", n)
	}

	for _, body := range []string{
		`{"fiscal_serial": "12345"}`,
		`{"fiscal_serial": ""}`,
		`{"brand": "HUGIN"}`,
		`{"fiscal_serial": "JI20012345", "colour": "red"}`,
		`{"fiscal_serial": "JI20012345", "brand": "` + strings.Repeat("A", 65) + `"}`,
		`{"fiscal_serial": "JI20012345", "model": "T\u0007300"}`,
		"{\"fiscal_serial\": \"JI20012345\", \"brand\": \"\xff\"}",
		`[]`,
		`{"fiscal_serial": "JI20012345"} {}`,
	} {
		err := f.client.Do(ctx, http.MethodPut, "/v1/device", []byte(body), nil)
		var ae *localapi.APIError
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
			t.Errorf("PUT %q: %v, want 400", body, err)
		}
	}

	out, err := f.CLI("device", "set", "--fiscal-serial", "JI20099999", "--brand", "HUGIN", "--model", "Tığ 300", "--ecr-serial", "HGN00012345")
	if err != nil {
		t.Fatalf("device set: %v\n%s", err, out)
	}
	if !strings.Contains(out, "JI20099999 (from pos)") {
		t.Fatalf("device set printed %q", out)
	}
	fiscal, pos := f.registeredWith(0)
	if fiscal != "JI20099999" || pos != "HGN00012345" {
		t.Fatalf("registered with YK_FISCAL_SERI_NO=%q POS_SERI_NO=%q", fiscal, pos)
	}
	d, err := f.client.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Source != "pos" || d.Model != "Tığ 300" || d.Brand != "HUGIN" || d.Sources["pos"].AgeS == nil {
		t.Fatalf("GET /v1/device %+v", d)
	}

	// Kept across a restart.
	f.stop()
	f.start()
	d, err = f.client.Device(ctx)
	if err != nil || d.Source != "pos" || d.FiscalSerial != "JI20099999" || d.Model != "Tığ 300" {
		t.Fatalf("after a restart: %+v, %v", d, err)
	}
	purgeKnowsEveryFile(t, f.DataDir())
}

// TestE2EDeviceConflict: the device reads one fiscal id, the POS reports
// another: the status says so with both values, registration takes the
// POS's fresh report (the order is config, a fresh POS report, device, an
// older POS report, cache), and the log warns once.
func TestE2EDeviceConflict(t *testing.T) {
	f := newFixtureWith(t, &devicetest.Options{FiscalSerial: "JI20012345"})
	f.start()
	ctx := context.Background()
	if fiscal, _ := f.registeredWith(0); fiscal != "JI20012345" {
		t.Fatalf("registered with %q", fiscal)
	}
	d, err := f.client.ReportDevice(ctx, localapi.DeviceReport{FiscalSerial: "AV0000017893", Brand: "BEKO"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Conflict || d.Conflicting["device"] != "JI20012345" || d.Conflicting["pos"] != "AV0000017893" || d.Source != "pos" {
		t.Fatalf("after a conflicting report: %+v", d)
	}
	st, err := f.client.Status(ctx)
	if err != nil || !st.Device.Conflict {
		t.Fatalf("status: %+v, %v", st.Device, err)
	}
	raw, _ := json.Marshal(st.Device)
	if !strings.Contains(string(raw), `"conflict":true`) {
		t.Fatalf("status JSON %s", raw)
	}
	// The same report again: still one warning.
	if _, err := f.client.ReportDevice(ctx, localapi.DeviceReport{FiscalSerial: "AV0000017893", Brand: "BEKO"}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(f.Output(), "disagree"); n != 1 {
		t.Fatalf("%d conflict warnings in the log, want 1:\n%s", n, f.Output())
	}
	// The POS corrects itself: the conflict ends.
	d, err = f.client.ReportDevice(ctx, localapi.DeviceReport{FiscalSerial: "JI20012345"})
	if err != nil || d.Conflict {
		t.Fatalf("after agreeing: %+v, %v", d, err)
	}
	t.Logf("RESULT e2e_device_conflict shown=true warnings=1 resolved=true")
}

// TestE2EKeepsServingWhileDeviceBad: while the ÖKC is silent, busy or
// unplugged the agent keeps answering the local API, accepts records,
// shows the device error beside the last known identity, and stops
// promptly.
func TestE2EKeepsServingWhileDeviceBad(t *testing.T) {
	// Over TCP: unplugged, the address refuses (a freed pty number could be
	// handed to another program's terminal at once).
	f := newFixtureWith(t, &devicetest.Options{FiscalSerial: "JI20012345", Transport: devicetest.TCP})
	// Re-read the device often (the agent's hidden knob for tests), below
	// the floor of tposl.interval: the test-only override.
	f.cfg.TPOSL.Interval.Duration = 2 * time.Second
	f.cfg.NoFloors = true
	if err := f.WriteConfig(&f.cfg); err != nil {
		t.Fatal(err)
	}
	f.start()
	ctx := context.Background()
	f.registeredWith(0)
	for i, bad := range []struct {
		name  string
		apply func()
		text  string
	}{
		{"silent", func() { f.sim.SetFault(devicetest.FaultSilent) }, device.ErrTimeout.Error()},
		{"busy", func() { f.sim.SetFault(devicetest.FaultBusy) }, "(busy)"},
		{"unplugged", func() { f.sim.Close() }, device.ErrNoDevice.Error()},
	} {
		bad.apply()
		var st localapi.Status
		start := time.Now()
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s: last device status %+v", bad.name, st.Device)
			}
		})
		testrig.WaitFor(t, "status to show the device "+bad.name, 20*time.Second, func() bool {
			var err error
			st, err = f.client.Status(ctx)
			if err != nil {
				t.Fatalf("%s: the agent stopped answering: %v", bad.name, err)
			}
			return strings.Contains(st.Device.Error, bad.text)
		})
		if st.Device.FiscalSerial != "JI20012345" || st.Device.Source != "cache" {
			t.Errorf("%s: identity %+v, want the cached one", bad.name, st.Device)
		}
		col := fmt.Sprintf(`{"integration_id": "dev-%d", "code": "Ş%d"}`, i, i)
		if _, err := f.client.Enqueue(ctx, "/v1/special-codes", []byte(col)); err != nil {
			t.Errorf("%s: enqueue: %v", bad.name, err)
		}
		t.Logf("RESULT e2e_device_%s seen_after=%v error=%q", bad.name, time.Since(start).Round(time.Millisecond), st.Device.Error)
		if bad.name != "unplugged" {
			f.sim.SetFault(devicetest.FaultNone)
		}
	}
	if d := f.stop(); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
}

// TestE2EStopsDuringProbe: a stop while the agent waits on a silent ÖKC
// (Hugin's 4.5 s ACK wait, 3 tries, 3 dialects: up to 40 s) is prompt.
func TestE2EStopsDuringProbe(t *testing.T) {
	f := newFixtureWith(t, &devicetest.Options{FiscalSerial: "JI20012345", Fault: devicetest.FaultSilent})
	f.cfg.Device.AckTimeout.Duration = 4500 * time.Millisecond
	f.cfg.Device.ProbeBudget.Duration = 45 * time.Second
	if err := f.WriteConfig(&f.cfg); err != nil {
		t.Fatal(err)
	}
	f.start()
	testrig.WaitFor(t, "the probe to start", 10*time.Second, func() bool { return f.sim.Requests() > 0 })
	d := f.stop()
	if d > 3*time.Second {
		t.Errorf("stop during a probe took %v", d)
	}
	t.Logf("RESULT e2e_stop_during_probe took=%v", d.Round(time.Millisecond))
}
