package device_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/device/gmp3"
	"github.com/tposagent/tposagent/internal/testrig"
	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// transports lists what the simulator can run on here.
func transports(t *testing.T) []string {
	if s, err := devicetest.Start(devicetest.Options{}); err == nil {
		s.Close()
		return []string{devicetest.PTY, devicetest.TCP}
	}
	return []string{devicetest.TCP}
}

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

// newReader builds a Reader. Unless the test sets one, the gap between two
// opens of a port is 10 ms here: most tests read one port several times,
// and the gap has tests of its own (TestHoldsAndGaps…).
func newReader(t *testing.T, cfg device.Config) *device.Reader {
	t.Helper()
	if cfg.ReopenGap == 0 {
		cfg.ReopenGap = 10 * time.Millisecond
	}
	r, err := device.NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitFor is testrig.WaitFor with this package's patience.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testrig.WaitFor(t, what, 5*time.Second, cond)
}

// TestEachDialectEndToEnd reads the fiscal id from a simulated device of
// each dialect, over each transport, with the dialect configured and with
// auto.
func TestEachDialectEndToEnd(t *testing.T) {
	for _, tr := range transports(t) {
		for _, d := range gmp3.Dialects() {
			for _, proto := range []string{d.String(), device.ProtocolAuto} {
				t.Run(fmt.Sprintf("%s/%s/%s", tr, d, proto), func(t *testing.T) {
					t.Parallel()
					serial := "JI20012345"
					if d == gmp3.T300 {
						serial = "FT40050248"
					}
					sim := startSim(t, devicetest.Options{Transport: tr, Dialect: d, FiscalSerial: serial})
					r := newReader(t, device.Config{Port: sim.Port(), Protocol: proto, AckTimeout: time.Second})
					id, err := r.Read(context.Background(), "")
					if err != nil {
						t.Fatal(err)
					}
					if id.FiscalSerial != serial || id.Protocol != d.String() || id.Source != device.SourceDevice || id.Port != sim.Port() {
						t.Fatalf("got %+v", id)
					}
				})
			}
		}
	}
}

// TestShiftedAnswer: an answer carrying 2 bytes between len and id is read.
func TestShiftedAnswer(t *testing.T) {
	for _, d := range gmp3.Dialects() {
		sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Dialect: d, Shifted: true})
		r := newReader(t, device.Config{Port: sim.Port(), Protocol: d.String(), AckTimeout: time.Second})
		id, err := r.Read(context.Background(), "")
		if err != nil || id.FiscalSerial != "JI20012345" {
			t.Fatalf("%s: %+v %v", d, id, err)
		}
	}
}

// TestAutoDialect: auto finds a CCITT-only device after its NAKs, and a
// T300 device; the dialect is remembered with the port and tried first
// next time.
func TestAutoDialect(t *testing.T) {
	for _, tc := range []struct {
		d        gmp3.Dialect
		serial   string
		requests int // ECHO requests the device decodes in its own dialect on the first read
	}{
		{gmp3.CCITT, "JI20012345", 1},
		{gmp3.T300, "FT40050248", 1},
	} {
		t.Run(tc.d.String(), func(t *testing.T) {
			sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Dialect: tc.d, FiscalSerial: tc.serial})
			dir := t.TempDir()
			r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: time.Second, CacheDir: dir})
			start := time.Now()
			id, err := r.Read(context.Background(), "")
			took := time.Since(start)
			if err != nil || id.FiscalSerial != tc.serial || id.Protocol != tc.d.String() {
				t.Fatalf("got %+v, %v", id, err)
			}
			// NAKs come at once (or after the device's 100 ms inter-byte
			// wait): refused dialects cost no ACK timeouts.
			if took > 2*time.Second {
				t.Errorf("auto took %v", took)
			}
			if n := sim.Requests(); n != tc.requests {
				t.Errorf("device decoded %d requests, want %d", n, tc.requests)
			}
			t.Logf("auto found %s in %v", tc.d, took.Round(time.Millisecond))
			// The first read ends with our ACK of the answer.
			waitFor(t, "the ack of the first answer", func() bool { r := sim.Received(); return r[len(r)-1] == gmp3.ACK })
			before := len(sim.Received())
			if _, err := r.Read(context.Background(), ""); err != nil {
				t.Fatal(err)
			}
			// The second read goes straight to the remembered dialect: one
			// request and one ACK.
			waitFor(t, "the ack of the second answer", func() bool { r := sim.Received(); return len(r) > before+1 && r[len(r)-1] == gmp3.ACK })
			got := sim.Received()[before:]
			if f, err := gmp3.Decode(tc.d, got[:len(got)-1]); err != nil || f.Type != gmp3.TypeEchoRequest || got[len(got)-1] != gmp3.ACK {
				t.Errorf("second read sent %x (%v)", got, err)
			}
		})
	}
}

// TestKnownIDInHeader: the request's header carries the best known fiscal
// id (a strict device answers 03 to any other), else twelve '0'.
func TestKnownIDInHeader(t *testing.T) {
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultStrict})
	r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: time.Second})
	_, err := r.Read(context.Background(), "")
	if !errors.Is(err, device.ErrUnregistered) || !errors.Is(err, device.ErrResultCode) {
		t.Fatalf("unknown id: %v", err)
	}
	id, err := r.Read(context.Background(), "JI20012345")
	if err != nil || id.FiscalSerial != "JI20012345" {
		t.Fatalf("known id: %+v %v", id, err)
	}
	// An id that is not a fiscal id is not put in the header.
	if _, err := r.Read(context.Background(), "not-an-id"); !errors.Is(err, device.ErrUnregistered) {
		t.Fatalf("bad known id: %v", err)
	}
}

// TestNeverPair runs reads against every behaviour of the device and checks,
// on the bytes the device received, that only ECHO requests, ACK and NAK
// were ever written.
func TestNeverPair(t *testing.T) {
	for _, tr := range transports(t) {
		for _, f := range devicetest.Faults() {
			if f == devicetest.FaultDeaf || f == devicetest.FaultZeroFlood {
				continue // nothing to learn; slow
			}
			t.Run(tr+"/"+f.String(), func(t *testing.T) {
				t.Parallel()
				sim := startSim(t, devicetest.Options{Transport: tr, Fault: f})
				r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: 300 * time.Millisecond, Tries: 2})
				_, _ = r.Read(context.Background(), "JI20012345")
				_, _ = r.Read(context.Background(), "")
				checkOnlyEcho(t, sim.Received())
				for _, typ := range sim.Types() {
					if typ != gmp3.TypeEchoRequest {
						t.Fatalf("device received message type %06X", typ)
					}
				}
			})
		}
	}
}

// checkOnlyEcho parses what the agent wrote: frames of any dialect, each
// an ECHO request, with only ACK and NAK bytes between them.
func checkOnlyEcho(t *testing.T, b []byte) int {
	t.Helper()
	frames := 0
	for len(b) > 0 {
		switch b[0] {
		case gmp3.ACK, gmp3.NAK:
			b = b[1:]
			continue
		case gmp3.STX:
		default:
			t.Fatalf("agent wrote byte %02x outside a frame (rest %x)", b[0], b)
		}
		ok := false
		for _, d := range gmp3.Dialects() {
			if len(b) < 3 {
				break
			}
			n := 3 + (int(b[1])<<8 | int(b[2])) + d.CheckLen() + 1
			if n > len(b) {
				continue
			}
			f, err := gmp3.Decode(d, b[:n])
			if err != nil {
				continue
			}
			if f.Type != gmp3.TypeEchoRequest {
				t.Fatalf("agent wrote a frame of type %06X", f.Type)
			}
			b, ok = b[n:], true
			frames++
			break
		}
		if !ok {
			t.Fatalf("agent wrote bytes that are no frame: %x", b)
		}
	}
	if frames == 0 {
		t.Fatal("no request seen")
	}
	return frames
}

func TestPortNone(t *testing.T) {
	r := newReader(t, device.Config{Port: "none"})
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrNoPort) {
		t.Fatalf("err = %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []device.Config{{Protocol: "crc32"}, {Port: "tcp://nohostport"}} {
		if _, err := device.NewReader(cfg); !errors.Is(err, device.ErrBadConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

func TestMissingPorts(t *testing.T) {
	r := newReader(t, device.Config{Port: filepath.Join(t.TempDir(), "ttyNONE")})
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrNoDevice) {
		t.Fatalf("serial: %v", err)
	}
	// A TCP port nobody listens on.
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP})
	port := sim.Port()
	sim.Close()
	r = newReader(t, device.Config{Port: port})
	start := time.Now()
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrNoDevice) {
		t.Fatalf("tcp: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("refused connection took %v", took)
	}
}

func TestHonoursContext(t *testing.T) {
	for _, tr := range transports(t) {
		sim := startSim(t, devicetest.Options{Transport: tr, Fault: devicetest.FaultSilent})
		r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: 10 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		start := time.Now()
		_, err := r.Read(ctx, "")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: err = %v", tr, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("%s: took %v after the context ended", tr, took)
		}
	}
}

func TestProbeBudget(t *testing.T) {
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultSilent})
	r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: time.Second, ProbeBudget: 400 * time.Millisecond})
	start := time.Now()
	_, err := r.Read(context.Background(), "")
	if !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Fatalf("took %v with a 400ms budget", took)
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
	good := startSim(t, devicetest.Options{FiscalSerial: "JI20099999", Dialect: gmp3.CCITT})
	list := []device.PortInfo{
		{Name: filepath.Join(t.TempDir(), "ttyGONE"), IsUSB: true},
		{Name: excluded.Port(), IsUSB: true},
		{Name: silent.Port(), IsUSB: true},
		{Name: garbage.Port()},
		{Name: flood.Port()},
		{Name: good.Port()},
	}
	dir := t.TempDir()
	r := newReader(t, device.Config{
		AckTimeout: 200 * time.Millisecond, CacheDir: dir, Exclude: []string{excluded.Port()}, Scan: device.ScanAll,
		ListPorts: func() ([]device.PortInfo, error) { return list, nil },
	})
	id, err := r.Read(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if id.FiscalSerial != "JI20099999" || id.Port != good.Port() || id.Protocol != "crc16-ccitt" {
		t.Fatalf("got %+v", id)
	}
	if excluded.Requests() != 0 {
		t.Errorf("excluded port was probed")
	}
	b, err := os.ReadFile(filepath.Join(dir, device.CacheFile))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Identity device.Identity   `json:"identity"`
		AutoPort string            `json:"auto_port"`
		Dialects map[string]string `json:"dialects"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if c.AutoPort != good.Port() || c.Identity.FiscalSerial != "JI20099999" || c.Dialects[good.Port()] != "crc16-ccitt" {
		t.Fatalf("cache %s", b)
	}
	if got := r.Cached(); got.FiscalSerial != "JI20099999" || got.Source != device.SourceCache {
		t.Fatalf("cached %+v", got)
	}
	// Next time the remembered port is asked first: the others see nothing.
	before := silent.Requests() + garbage.Requests()
	if _, err := r.Read(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if after := silent.Requests() + garbage.Requests(); after != before {
		t.Errorf("other ports probed again (%d → %d requests)", before, after)
	}
}

// TestAutoScanGivesAnsweringPortAllTries: while scanning, a port that
// stays silent costs one try per dialect, but one whose device NAKs a
// frame (DESIGN: "a dialect gets its 3 tries (a NAK or silence each)")
// gets every try of that dialect, so a device that NAKs the first send is
// found on a port it was never seen on.
func TestAutoScanGivesAnsweringPortAllTries(t *testing.T) {
	silent := startSim(t, devicetest.Options{Fault: devicetest.FaultSilent})
	good := startSim(t, devicetest.Options{FiscalSerial: "JI20012345", Fault: devicetest.FaultNAKFirst})
	list := []device.PortInfo{{Name: silent.Port(), IsUSB: true}, {Name: good.Port(), IsUSB: true}}
	r := newReader(t, device.Config{
		AckTimeout: 200 * time.Millisecond, CacheDir: t.TempDir(),
		ListPorts: func() ([]device.PortInfo, error) { return list, nil },
	})
	id, err := r.Read(context.Background(), "")
	if err != nil {
		t.Fatalf("a device that NAKs the first send was not found by the scan: %v", err)
	}
	if id.FiscalSerial != "JI20012345" || id.Port != good.Port() || id.Protocol != "crc16-arc" {
		t.Fatalf("got %+v", id)
	}
	if n := silent.Requests(); n > 3 {
		t.Errorf("the silent port got %d frames, want at most one per dialect (3)", n)
	}
}

func TestCorruptCacheIgnored(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"{not json", `{"identity":{"fiscal_serial":"bogus id"}}`, strings.Repeat(" ", 70<<10)} {
		if err := os.WriteFile(filepath.Join(dir, device.CacheFile), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		r := newReader(t, device.Config{Port: "none", CacheDir: dir})
		if id := r.Cached(); id.FiscalSerial != "" {
			t.Fatalf("cache %q gave %+v", content[:min(20, len(content))], id)
		}
	}
}

func TestPortsFallBackToNames(t *testing.T) {
	none := func() ([]*enumerator.PortDetails, error) { return nil, nil }
	failing := func() ([]*enumerator.PortDetails, error) { return nil, errors.New("setupapi unavailable") }
	names := func() ([]string, error) { return []string{"COM10", "COM2"}, nil }
	for _, detailed := range []func() ([]*enumerator.PortDetails, error){none, failing} {
		got, err := device.ListPorts(detailed, names)
		if err != nil || len(got) != 2 || got[0].Name != "COM2" || got[1].Name != "COM10" {
			t.Fatalf("got %+v, %v", got, err)
		}
	}
	usb := func() ([]*enumerator.PortDetails, error) {
		return []*enumerator.PortDetails{{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001"}}, nil
	}
	got, err := device.ListPorts(usb, func() ([]string, error) { t.Fatal("names listed although details were found"); return nil, nil })
	if err != nil || len(got) != 1 || got[0].VID != "0403" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := device.ListPorts(failing, func() ([]string, error) { return nil, errors.New("no") }); err == nil {
		t.Fatal("both enumerators failed without an error")
	}
}

func TestSortPorts(t *testing.T) {
	ps := []device.PortInfo{{Name: "COM10"}, {Name: "COM2"}, {Name: "/dev/ttyUSB1", IsUSB: true}, {Name: "/dev/ttyUSB0", IsUSB: true}}
	device.SortPorts(ps)
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, " "); got != "/dev/ttyUSB0 /dev/ttyUSB1 COM2 COM10" {
		t.Fatalf("order %s", got)
	}
}

func TestOpenErrorKinds(t *testing.T) {
	for _, tt := range []struct {
		in   error
		want error
	}{
		{&serial.PortError{}, device.ErrBusy}, // the zero code is PortBusy
		{fs.ErrPermission, device.ErrPermission},
		{&fs.PathError{Op: "open", Path: "/dev/ttyUSB0", Err: fs.ErrNotExist}, device.ErrNoDevice},
	} {
		if got := device.OpenError(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("openError(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestCheckPort(t *testing.T) {
	for _, ok := range []string{"COM3", "com12", `\\.\COM3`, "/dev/ttyUSB0", "/dev/serial/by-id/usb-Hugin_T300-if00", "tcp://192.168.1.50:4444", "tcp://okc.local:7500"} {
		if err := device.CheckPort(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "auto", "NONE", "COM0", "COM03", "COM999", "ttyUSB0", "/etc/passwd", "/dev/", "/dev/../etc/shadow", "tcp://nohost", "tcp://:4444", "tcp://h:0", "tcp://h:99999", "LPT1"} {
		if err := device.CheckPort(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestIsUSBSerial(t *testing.T) {
	for _, tc := range []struct {
		p    device.PortInfo
		want bool
	}{
		{device.PortInfo{Name: "/dev/ttyUSB0"}, true},
		{device.PortInfo{Name: "/dev/ttyACM1"}, true},
		{device.PortInfo{Name: "/dev/ttyS0"}, false},
		{device.PortInfo{Name: "/dev/ttyAMA0"}, false},
		{device.PortInfo{Name: "COM1"}, false},
		{device.PortInfo{Name: "COM5", IsUSB: true, VID: "0403", PID: "6001"}, true},
	} {
		if got := device.IsUSBSerial(tc.p); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.p, got, tc.want)
		}
	}
}
