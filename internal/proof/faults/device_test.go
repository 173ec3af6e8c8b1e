package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
)

const (
	simSerial    = "JI20012345"
	devTimeout   = 200 * time.Millisecond // answer timeout per try
	devTries     = device.DefaultTries    // what the agent uses
	slowByteStep = 40 * time.Millisecond  // FaultSlow: a frame takes seconds
	// A read's limit: three dialects, every try's ACK and answer windows,
	// plus opening and closing the port on a loaded machine.
	readLimit = 3*devTries*2*devTimeout + 1500*time.Millisecond
	// A read that follows another on the same port first waits out the
	// gap the agent leaves the POS between two opens (device.reopen_gap).
	// Every step of the matrix waits it out, so the matrix runs with the
	// shortest gap a config may give, not the default 5 s (the device
	// package's tests hold the default).
	reopenGap = config.MinReopenGap
)

// deviceFault is what one fault mode must produce.
type deviceFault struct {
	fault devicetest.Fault
	want  []error // every one must match errors.Is; nil: a good read
	// text: what /v1/status's device.error must contain (the agent has
	// only the string); any of them.
	text []string
}

func deviceFaults() []deviceFault {
	timeout := []string{device.ErrTimeout.Error()}
	rows := map[devicetest.Fault]deviceFault{
		devicetest.FaultNone:        {},
		devicetest.FaultSilent:      {want: []error{device.ErrTimeout}, text: timeout},
		devicetest.FaultSlow:        {want: []error{device.ErrTimeout}, text: timeout},
		devicetest.FaultGarbage:     {want: []error{device.ErrBadFrame, device.ErrGarbage}, text: []string{device.ErrGarbage.Error()}},
		devicetest.FaultEcho:        {want: []error{device.ErrBadFrame, device.ErrEchoed}, text: []string{device.ErrEchoed.Error()}},
		devicetest.FaultZeroFlood:   {want: []error{device.ErrBadFrame, device.ErrZeroFlood}, text: []string{device.ErrZeroFlood.Error()}},
		devicetest.FaultBadChecksum: {want: []error{device.ErrBadFrame, device.ErrChecksum}, text: []string{device.ErrChecksum.Error()}},
		devicetest.FaultBadSequence: {want: []error{device.ErrBadFrame, device.ErrWrongSequence}, text: []string{device.ErrWrongSequence.Error()}},
		devicetest.FaultNAKFirst:    {},
		devicetest.FaultNAKAll:      {want: []error{device.ErrNAK}, text: []string{device.ErrNAK.Error()}},
		devicetest.FaultNoACK:       {},
		// The reader sends the fiscal id it knows in the header, so a
		// strict device answers.
		devicetest.FaultStrict: {},
		devicetest.FaultBusy:   {want: []error{device.ErrResultCode, device.ErrDeviceBusy}, text: []string{"(busy)"}},
		devicetest.FaultDeaf:   {want: []error{device.ErrTimeout}, text: timeout},
		// After a hang-up the port is gone: the first read sees the
		// disconnect, later ones find no device there.
		devicetest.FaultHangUp: {want: []error{device.ErrDisconnected},
			text: []string{device.ErrDisconnected.Error(), device.ErrNoDevice.Error()}},
	}
	var out []deviceFault
	for _, f := range devicetest.Faults() {
		r, ok := rows[f]
		if !ok {
			panic("faults: no expectation for device fault " + f.String() + ": add it to deviceFaults")
		}
		r.fault = f
		out = append(out, r)
	}
	// The hang-up ends the device for good: last.
	sort.SliceStable(out, func(i, j int) bool {
		return out[j].fault == devicetest.FaultHangUp && out[i].fault != devicetest.FaultHangUp
	})
	return out
}

func startSim(t *testing.T) *devicetest.Sim {
	t.Helper()
	// A pty where the OS has them, else TCP (Windows): the same link
	// layer and faults over the agent's tcp:// port.
	sim, err := devicetest.StartAny(devicetest.Options{FiscalSerial: simSerial, ByteDelay: slowByteStep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// TestDeviceFaultMatrix: every fault mode, first under the device reader
// the agent uses (good read, then the fault: the limit, the error, the
// cached identity), then under a running agent.
func TestDeviceFaultMatrix(t *testing.T) {
	t.Run("reader", func(t *testing.T) {
		for _, df := range deviceFaults() {
			t.Run(df.fault.String(), func(t *testing.T) {
				t.Parallel()
				sim := startSim(t)
				r, err := device.NewReader(device.Config{Port: sim.Port(), AckTimeout: devTimeout, Tries: devTries, ReopenGap: reopenGap, CacheDir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				if id, err := r.Read(ctx, ""); err != nil || id.FiscalSerial != simSerial || id.Source != device.SourceDevice {
					t.Fatalf("good read: %+v, %v", id, err)
				}
				sim.SetFault(df.fault)
				start := time.Now()
				id, err := r.Read(ctx, r.Cached().FiscalSerial) // as the agent does
				took := time.Since(start)
				limit := reopenGap + readLimit // the good read just closed the port
				if runtime.GOOS == "windows" {
					// Under wine the parallel subtests' timers fire late on a
					// loaded machine (12.06 s against 10.1 s once, for a
					// read that waits out a 5 s reopen gap twice).
					limit += limit / 4
				}
				if took > limit {
					t.Errorf("read took %v, limit %v", took, limit)
				}
				if df.want == nil {
					if err != nil || id.Source != device.SourceDevice {
						t.Errorf("read: %+v, %v", id, err)
					}
				} else {
					for _, w := range df.want {
						if !errors.Is(err, w) {
							t.Errorf("err = %v, want %v", err, w)
						}
					}
					if id.FiscalSerial != "" {
						t.Errorf("identity %+v from a faulty device", id)
					}
					if c := r.Cached(); c.FiscalSerial != simSerial || c.Source != device.SourceCache {
						t.Errorf("cached %+v, want %s", c, simSerial)
					}
					id = r.Cached()
				}
				t.Logf("RESULT device_fault=%s took=%v limit=%v err=%q source=%s", df.fault, took.Round(time.Millisecond), limit, errText(err), id.Source)
			})
		}
	})
	t.Run("agent", testAgentDeviceFaults)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

const tillToken = "faults-token-51c0e4a9b7d2f386"

func newTillConfig(t *testing.T, port string, ts *tposltest.Server, od *oduyotest.Server) config.Config {
	now := time.Now()
	ts.SetReturn(tposl.Return{Status: true, Aktif: 1, GMP3Status: 1, GMP3ExpDate: now.AddDate(0, 0, 50).Format("2006-01-02"),
		DemoLisansGun: 30, DemoBasTarih: now.AddDate(0, 0, -10).Format("2006-01-02"), OnayFiscalSeriNo: simSerial})
	ts.SetCredentials("faults-kasa", "faults-tposl-Şifre-8812")
	c := config.Default()
	c.DataDir = t.TempDir()
	c.Store = config.Store{TaxNumber: "1234567890", TaxOffice: "Kadıköy", CompanyName: "Örnek Gıda A.Ş.", PosNo: 1, PosType: 1, ReceiptLimit: "5000"}
	c.TPOSL.URL, c.TPOSL.Username, c.TPOSL.Password = ts.URL(), "faults-kasa", "faults-tposl-Şifre-8812"
	c.TPOSL.Interval = config.Duration{Duration: 10 * time.Second}
	c.NoFloors = true // the interval is below its floor: tests only
	c.Oduyo.BaseURL, c.Oduyo.Username = od.URL(), od.Username
	c.Oduyo.APIKey, c.Oduyo.Password = config.Secret(od.APIKey), config.Secret(od.Password)
	c.Device.Port = port
	c.Device.AckTimeout = config.Duration{Duration: devTimeout}
	c.Device.ReopenGap = config.Duration{Duration: reopenGap}
	c.API.Listen = "127.0.0.1:0"
	c.API.Token = config.Secret(tillToken)
	c.Outbox.RetryMax = config.Duration{Duration: time.Second}
	c.Outbox.ReconnectJitter = config.Duration{Duration: 0}
	if err := c.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// logBuffer collects the agent's log output (safe for concurrent use).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startAgent runs agent.New + Run in process, logging at debug level into
// logs; stop cancels and waits.
func startAgent(t *testing.T, cfg config.Config, recheck time.Duration, logs *logBuffer) (*agent.Agent, *localapi.Client, func()) {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := agent.New(&cfg, agent.Options{DeviceRecheck: recheck, Logger: log})
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	stop := testrig.Run(t, "agent run", 15*time.Second, a.Run)
	return a, &localapi.Client{BaseURL: "http://" + a.Addr().String(), Token: tillToken}, stop
}

// testAgentDeviceFaults: a running agent reads the device, the device goes
// bad in every way in turn (and recovers in between); the agent keeps
// serving, shows the error and the cached identity, and registers with the
// fiscal serial. Then a fresh agent starts with the device bad.
func testAgentDeviceFaults(t *testing.T) {
	sim := startSim(t)
	ts := tposltest.NewServer()
	t.Cleanup(ts.Close)
	od := oduyotest.NewServer()
	t.Cleanup(od.Close)
	cfg := newTillConfig(t, sim.Port(), ts, od)
	logs := &logBuffer{}
	_, client, stop := startAgent(t, cfg, 50*time.Millisecond, logs)
	ctx := context.Background()

	status := func() localapi.Status {
		st, err := client.Status(ctx)
		if err != nil {
			t.Fatalf("the agent stopped answering: %v", err)
		}
		return st
	}
	testrig.WaitFor(t, "a good read and a registration", 20*time.Second, func() bool {
		st := status()
		return st.Device.Source == string(device.SourceDevice) && st.Device.FiscalSerial == simSerial && st.Registered
	})

	n := 0
	for _, df := range deviceFaults() {
		if df.want == nil {
			continue
		}
		n++
		sim.SetFault(df.fault)
		start := time.Now()
		var st localapi.Status
		testrig.WaitFor(t, "status to show "+df.fault.String(), 20*time.Second, func() bool {
			st = status()
			for _, s := range df.text {
				if strings.Contains(st.Device.Error, s) {
					return true
				}
			}
			return false
		})
		took := time.Since(start)
		// The next recheck, the gap since the last open, one read with
		// every try, and slack.
		if limit := 50*time.Millisecond + reopenGap + readLimit + time.Second; took > limit {
			t.Errorf("%s: status showed it after %v, limit %v", df.fault, took, limit)
		}
		if st.Device.Source != string(device.SourceCache) || st.Device.FiscalSerial != simSerial {
			t.Errorf("%s: status device %+v, want the cached identity %s", df.fault, st.Device, simSerial)
		}
		// The agent keeps doing its job: a record is accepted.
		col, _ := json.Marshal(map[string]any{"integration_id": "dev-" + df.fault.String(), "code": "Ç" + df.fault.String()})
		if _, err := client.Enqueue(ctx, "/v1/special-codes", col); err != nil {
			t.Errorf("%s: enqueue while the device is bad: %v", df.fault, err)
		}
		t.Logf("RESULT agent_device_fault=%s seen_in_status_after=%v source=%s fiscal_serial=%s error=%q",
			df.fault, took.Round(time.Millisecond), st.Device.Source, st.Device.FiscalSerial, st.Device.Error)
		if df.fault == devicetest.FaultHangUp {
			continue // the port is gone for good
		}
		sim.SetFault(devicetest.FaultNone)
		testrig.WaitFor(t, "recovery after "+df.fault.String(), 20*time.Second, func() bool {
			st := status()
			return st.Device.Source == string(device.SourceDevice) && st.Device.Error == ""
		})
	}
	testrig.WaitFor(t, "the records to be delivered", 20*time.Second, func() bool { return len(od.Delivered()) >= n })
	stop()

	// A fresh start with the device bad: the cached identity is used and
	// the registration at start sends the fiscal serial.
	sim2 := startSim(t)
	sim2.SetFault(devicetest.FaultSilent)
	cfg.Device.Port = sim2.Port()
	before := len(ts.Requests())
	_, client, _ = startAgent(t, cfg, time.Hour, logs)
	testrig.WaitFor(t, "registration after a start with a silent device", 20*time.Second, func() bool { return len(ts.Requests()) > before })
	st := status()
	if st.Device.Source != string(device.SourceCache) || st.Device.FiscalSerial != simSerial || !strings.Contains(st.Device.Error, device.ErrTimeout.Error()) {
		t.Errorf("after a start with a silent device: %+v", st.Device)
	}
	regs := ts.Requests()
	for i, p := range regs {
		if p.YKFiscalSeriNo != simSerial {
			t.Errorf("registration %d sent YK_FISCAL_SERI_NO %q, want %s", i, p.YKFiscalSeriNo, simSerial)
		}
	}
	// The device errors went to the log; no secret did.
	out := logs.String()
	if !strings.Contains(out, device.ErrTimeout.Error()) {
		t.Errorf("the log does not mention the device error")
	}
	secrets := append([]string{cfg.TPOSL.Password.Reveal(), cfg.Oduyo.Password.Reveal(), cfg.Oduyo.APIKey.Reveal(), tillToken}, od.Sessions()...)
	if len(secrets) == 4 {
		t.Errorf("no Ödüyo session was opened: the records were not delivered through a login")
	}
	for _, sec := range secrets {
		if strings.Contains(out, sec) {
			t.Errorf("a secret (%d chars) appears in the agent's log", len(sec))
		}
	}
	t.Logf("RESULT agent_device_restart=silent registrations=%d all_with_serial=%s source=%s", len(regs), simSerial, st.Device.Source)
}
