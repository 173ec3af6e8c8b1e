package device_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/testrig"
	"go.bug.st/serial"
)

func startSim(t *testing.T, opts devicetest.Options) *devicetest.Sim {
	t.Helper()
	sim, err := devicetest.Start(opts)
	if errors.Is(err, devicetest.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

func TestProbeReadsIdentity(t *testing.T) {
	sim := startSim(t, devicetest.Options{Brand: "Hugin Şirketi", Model: "ÖKC-Tığ"})
	before := time.Now()
	id, err := device.Probe(context.Background(), sim.Port(), 115200, time.Second, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := device.Identity{FiscalSerial: "JI20012345", ECRSerial: "JHWE20000079", Brand: "Hugin Şirketi", Model: "ÖKC-Tığ", Port: sim.Port(), Source: device.SourceDevice}
	got := id
	got.ReadAt = time.Time{}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if id.ReadAt.Before(before) || time.Since(id.ReadAt) > 5*time.Second {
		t.Fatalf("read_at %v", id.ReadAt)
	}
	if n := sim.Requests(); n != 1 {
		t.Fatalf("device saw %d requests, want 1", n)
	}
}

// TestProbeFaults runs every fault mode over a real pty, checking the error
// kind and that the probe returned within its limit.
func TestProbeFaults(t *testing.T) {
	const timeout = 300 * time.Millisecond
	const tries = 2
	tests := []struct {
		fault     devicetest.Fault
		byteDelay time.Duration
		want      []error // every one must match; nil: success
		requests  int     // requests the device must have seen (0: don't check)
	}{
		{fault: devicetest.FaultNone, requests: 1},
		{fault: devicetest.FaultSilent, want: []error{device.ErrTimeout}, requests: tries},
		{fault: devicetest.FaultSlow, byteDelay: time.Millisecond, requests: 1},
		{fault: devicetest.FaultSlow, byteDelay: 40 * time.Millisecond, want: []error{device.ErrTimeout}},
		{fault: devicetest.FaultGarbage, want: []error{device.ErrBadFrame}, requests: tries},
		{fault: devicetest.FaultEcho, want: []error{device.ErrEchoed, device.ErrBadFrame}, requests: 1},
		{fault: devicetest.FaultZeroFlood, want: []error{device.ErrZeroFlood, device.ErrBadFrame}},
		{fault: devicetest.FaultBadLRC, want: []error{device.ErrBadLRC, device.ErrBadFrame}, requests: tries},
		{fault: devicetest.FaultWrongSequence, want: []error{device.ErrWrongSequence, device.ErrBadFrame}, requests: tries},
		{fault: devicetest.FaultHangUp, want: []error{device.ErrDisconnected}, requests: 1},
	}
	for _, tt := range tests {
		name := tt.fault.String()
		if tt.byteDelay > 0 {
			name += "/" + tt.byteDelay.String()
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sim := startSim(t, devicetest.Options{Fault: tt.fault, ByteDelay: tt.byteDelay})
			to := timeout
			if tt.want == nil {
				to = 3 * time.Second // a good answer ends the wait; leave room for a loaded machine
			}
			start := time.Now()
			id, err := device.Probe(context.Background(), sim.Port(), 115200, to, tries)
			took := time.Since(start)
			// tries answer windows plus open/close slack.
			if limit := tries*to + 700*time.Millisecond; took > limit {
				t.Errorf("took %v, limit %v", took, limit)
			}
			if tt.want == nil {
				if err != nil || id.FiscalSerial != "JI20012345" {
					t.Fatalf("id %+v, err %v", id, err)
				}
			} else {
				if id.FiscalSerial != "" {
					t.Errorf("wrong identity %+v from a faulty device", id)
				}
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Errorf("err = %v, want %v", err, w)
					}
				}
			}
			if tt.requests > 0 {
				testrig.WaitFor(t, "requests", 3*time.Second, func() bool { return sim.Requests() >= tt.requests })
				if n := sim.Requests(); n != tt.requests {
					t.Errorf("device saw %d requests, want %d", n, tt.requests)
				}
			}
		})
	}
}

func TestSetFaultAtRunTime(t *testing.T) {
	sim := startSim(t, devicetest.Options{Fault: devicetest.FaultSilent})
	if _, err := device.Probe(context.Background(), sim.Port(), 0, 200*time.Millisecond, 1); !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("silent: err = %v", err)
	}
	sim.SetFault(devicetest.FaultNone)
	id, err := device.Probe(context.Background(), sim.Port(), 0, time.Second, 1)
	if err != nil || id.FiscalSerial != "JI20012345" {
		t.Fatalf("after recovery: %+v, %v", id, err)
	}
}

func TestProbeHonoursContext(t *testing.T) {
	sim := startSim(t, devicetest.Options{Fault: devicetest.FaultSilent})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := device.Probe(ctx, sim.Port(), 0, 10*time.Second, 3)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("took %v after the context ended", took)
	}
}

func TestProbeMissingPort(t *testing.T) {
	_, err := device.Probe(context.Background(), filepath.Join(t.TempDir(), "ttyNONE"), 0, 0, 0)
	if !errors.Is(err, device.ErrNoDevice) {
		t.Fatalf("err = %v", err)
	}
}

func TestOpenErrorKinds(t *testing.T) {
	tests := []struct {
		in   error
		want error
	}{
		{&serial.PortError{}, device.ErrBusy}, // the zero code is PortBusy
		{fs.ErrPermission, device.ErrPermission},
		{&fs.PathError{Op: "open", Path: "/dev/ttyUSB0", Err: fs.ErrNotExist}, device.ErrNoDevice},
	}
	for _, tt := range tests {
		if got := device.OpenError(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("openError(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestAutoFindsDevice puts the device among ports that are silent, speak
// garbage, flood zeros or do not exist, and checks auto-detection finds it
// and remembers it.
func TestAutoFindsDevice(t *testing.T) {
	silent := startSim(t, devicetest.Options{Fault: devicetest.FaultSilent})
	garbage := startSim(t, devicetest.Options{Fault: devicetest.FaultGarbage})
	flood := startSim(t, devicetest.Options{Fault: devicetest.FaultZeroFlood})
	excluded := startSim(t, devicetest.Options{FiscalSerial: "AB99999999"})
	good := startSim(t, devicetest.Options{FiscalSerial: "JI20099999"})
	list := []device.PortInfo{
		{Name: filepath.Join(t.TempDir(), "ttyGONE"), IsUSB: true},
		{Name: excluded.Port(), IsUSB: true},
		{Name: silent.Port(), IsUSB: true},
		{Name: garbage.Port()},
		{Name: flood.Port()},
		{Name: good.Port()},
	}
	dir := t.TempDir()
	r := device.NewReader(device.Config{
		Timeout: time.Second, CacheDir: dir, Exclude: []string{excluded.Port()},
		ListPorts: func() ([]device.PortInfo, error) { return list, nil },
	})
	start := time.Now()
	id, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second { // silent and garbage cost a second each
		t.Errorf("auto took %v", took)
	}
	if id.FiscalSerial != "JI20099999" || id.Port != good.Port() || id.Source != device.SourceDevice {
		t.Fatalf("got %+v", id)
	}
	if excluded.Requests() != 0 {
		t.Errorf("excluded port was probed")
	}
	if silent.Requests() != 1 || garbage.Requests() != 1 {
		t.Errorf("requests: silent %d garbage %d, want one each", silent.Requests(), garbage.Requests())
	}
	var c struct {
		Identity device.Identity `json:"identity"`
		AutoPort string          `json:"auto_port"`
	}
	b, err := os.ReadFile(filepath.Join(dir, device.CacheFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &c); err != nil || c.AutoPort != good.Port() || c.Identity.FiscalSerial != "JI20099999" {
		t.Fatalf("cache %s (%v)", b, err)
	}

	// The next read asks the winner first and nobody else.
	id, err = r.Read(context.Background())
	if err != nil || id.Port != good.Port() {
		t.Fatalf("second read: %+v, %v", id, err)
	}
	if silent.Requests() != 1 || garbage.Requests() != 1 {
		t.Errorf("second read probed other ports: silent %d garbage %d", silent.Requests(), garbage.Requests())
	}
}

func TestAutoNothingFound(t *testing.T) {
	silent := startSim(t, devicetest.Options{Fault: devicetest.FaultSilent})
	r := device.NewReader(device.Config{
		Timeout:   200 * time.Millisecond,
		ListPorts: func() ([]device.PortInfo, error) { return []device.PortInfo{{Name: silent.Port()}}, nil },
	})
	id, err := r.Read(context.Background())
	if !errors.Is(err, device.ErrNoDevice) || id.FiscalSerial != "" {
		t.Fatalf("got %+v, %v", id, err)
	}
	r = device.NewReader(device.Config{ListPorts: func() ([]device.PortInfo, error) { return nil, nil }})
	if _, err := r.Read(context.Background()); !errors.Is(err, device.ErrNoDevice) {
		t.Fatalf("no ports: %v", err)
	}
}

// TestCacheFallback reads the device once, then loses it (gone, then busy):
// the identity still comes, from the cache, with the original read time.
func TestCacheFallback(t *testing.T) {
	sim := startSim(t, devicetest.Options{})
	dir := t.TempDir()
	cfg := device.Config{Port: sim.Port(), CacheDir: dir, Timeout: 2 * time.Second, Tries: 1}
	first, err := device.NewReader(cfg).Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sim.Close()

	id, err := device.NewReader(cfg).Read(context.Background())
	if !errors.Is(err, device.ErrNoDevice) {
		t.Fatalf("err = %v", err)
	}
	if id.Source != device.SourceCache || id.FiscalSerial != first.FiscalSerial || id.ECRSerial != first.ECRSerial || !id.ReadAt.Equal(first.ReadAt) {
		t.Fatalf("cached %+v, first %+v", id, first)
	}
	later := first.ReadAt.Add(time.Hour)
	if age := id.Age(later); age != time.Hour {
		t.Fatalf("age %v", age)
	}

	r := device.NewReader(cfg)
	device.SetOpenError(r, &serial.PortError{}) // PortBusy
	id, err = r.Read(context.Background())
	if !errors.Is(err, device.ErrBusy) || id.Source != device.SourceCache || id.FiscalSerial != "JI20012345" {
		t.Fatalf("busy: %+v, %v", id, err)
	}
}

func TestConfigOverride(t *testing.T) {
	sim := startSim(t, devicetest.Options{})
	r := device.NewReader(device.Config{Port: sim.Port(), FiscalSerial: " JI11111111 ", Timeout: time.Second})
	id, err := r.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if id.FiscalSerial != "JI11111111" || id.Source != device.SourceConfig || id.ECRSerial != "JHWE20000079" || id.Brand != "INGENICO" {
		t.Fatalf("got %+v", id)
	}
	sim.SetFault(devicetest.FaultSilent)
	r = device.NewReader(device.Config{Port: sim.Port(), FiscalSerial: "JI11111111", Timeout: 100 * time.Millisecond, Tries: 1})
	id, err = r.Read(context.Background())
	if !errors.Is(err, device.ErrTimeout) || id.FiscalSerial != "JI11111111" || id.Source != device.SourceConfig {
		t.Fatalf("silent device with config: %+v, %v", id, err)
	}
}

func TestPortNone(t *testing.T) {
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	r := device.NewReader(device.Config{Port: "none", FiscalSerial: "JI20012345", Now: func() time.Time { return at }})
	id, err := r.Read(context.Background())
	if err != nil || id != (device.Identity{FiscalSerial: "JI20012345", Source: device.SourceConfig, ReadAt: at}) {
		t.Fatalf("got %+v, %v", id, err)
	}
	_, err = device.NewReader(device.Config{Port: "none"}).Read(context.Background())
	if !errors.Is(err, device.ErrNoDevice) {
		t.Fatalf("none without serial: %v", err)
	}
}

func TestCorruptCacheIgnored(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, device.CacheFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := device.NewReader(device.Config{Port: filepath.Join(dir, "ttyNONE"), CacheDir: dir})
	id, err := r.Read(context.Background())
	if !errors.Is(err, device.ErrNoDevice) || id.FiscalSerial != "" {
		t.Fatalf("got %+v, %v", id, err)
	}
}

func TestSortPorts(t *testing.T) {
	ps := []device.PortInfo{{Name: "COM10"}, {Name: "COM2"}, {Name: "COM7", IsUSB: true}, {Name: "/dev/ttyS1"}, {Name: "COM1"}}
	device.SortPorts(ps)
	var got []string
	for _, p := range ps {
		got = append(got, p.Name)
	}
	want := []string{"COM7", "/dev/ttyS1", "COM1", "COM2", "COM10"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestPortsDoesNotFail(t *testing.T) {
	if _, err := device.Ports(); err != nil {
		t.Fatal(err)
	}
}
