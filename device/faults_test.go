package device_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/device/gmp3"
)

// TestFaultModes runs every fault mode of the simulated device over a real
// pty and a real TCP socket, with protocol auto (all three dialects), and
// checks the error kind, that no identity comes from a faulty device, and
// that the read ends within its limit: dialects × tries × (ACK wait + reply
// wait) plus slack. The measured times are logged as a table.
func TestFaultModes(t *testing.T) {
	const (
		ack   = 300 * time.Millisecond
		tries = 2
	)
	limit := 3*tries*2*ack + 1500*time.Millisecond
	tests := []struct {
		fault devicetest.Fault
		want  []error // every one must match; nil: success
	}{
		{devicetest.FaultNone, nil},
		{devicetest.FaultSilent, []error{device.ErrTimeout}},
		{devicetest.FaultGarbage, []error{device.ErrGarbage, device.ErrBadFrame}},
		{devicetest.FaultZeroFlood, []error{device.ErrZeroFlood, device.ErrBadFrame}},
		{devicetest.FaultEcho, []error{device.ErrEchoed, device.ErrBadFrame}},
		{devicetest.FaultBadChecksum, []error{device.ErrChecksum, device.ErrBadFrame}},
		{devicetest.FaultBadSequence, []error{device.ErrWrongSequence, device.ErrBadFrame}},
		{devicetest.FaultNAKFirst, nil},
		{devicetest.FaultNAKAll, []error{device.ErrNAK}},
		{devicetest.FaultNoACK, nil},
		{devicetest.FaultStrict, []error{device.ErrUnregistered, device.ErrResultCode}},
		{devicetest.FaultBusy, []error{device.ErrDeviceBusy, device.ErrResultCode}},
		{devicetest.FaultSlow, nil},
		{devicetest.FaultHangUp, []error{device.ErrDisconnected}},
		{devicetest.FaultDeaf, []error{device.ErrTimeout}},
	}
	if len(tests) != len(devicetest.Faults()) {
		t.Fatalf("table covers %d of %d faults", len(tests), len(devicetest.Faults()))
	}
	var mu sync.Mutex
	var rows []string
	t.Cleanup(func() {
		sort.Strings(rows)
		t.Logf("fault mode table (ack %v, %d tries, 3 dialects, limit %v):\n%-6s %-14s %-9s %s\n%s",
			ack, tries, limit, "line", "fault", "took", "error", strings.Join(rows, "\n"))
	})
	for _, tr := range transports(t) {
		for _, tt := range tests {
			t.Run(tr+"/"+tt.fault.String(), func(t *testing.T) {
				t.Parallel()
				sim := startSim(t, devicetest.Options{Transport: tr, Fault: tt.fault})
				r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: ack, Tries: tries})
				start := time.Now()
				id, err := r.Read(context.Background(), "")
				took := time.Since(start)
				mu.Lock()
				rows = append(rows, fmt.Sprintf("%-6s %-14s %-9v %v", tr, tt.fault, took.Round(time.Millisecond), errText(err)))
				mu.Unlock()
				if took > limit {
					t.Errorf("took %v, limit %v", took, limit)
				}
				if tt.want == nil {
					if err != nil || id.FiscalSerial != "JI20012345" {
						t.Fatalf("id %+v, err %v", id, err)
					}
					return
				}
				if id.FiscalSerial != "" {
					t.Errorf("identity %+v from a faulty device", id)
				}
				for _, w := range tt.want {
					if !errors.Is(err, w) {
						t.Errorf("err = %v, want %v", err, w)
					}
				}
			})
		}
	}
}

func errText(err error) string {
	if err == nil {
		return "ok: JI20012345"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s) > 90 {
		s = "…" + s[max(0, len(s)-90):]
	}
	return s
}

// TestSetFaultAtRunTime: a device that recovers is read again.
func TestSetFaultAtRunTime(t *testing.T) {
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultBusy})
	r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: 200 * time.Millisecond, Tries: 1})
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrDeviceBusy) {
		t.Fatalf("busy: err = %v", err)
	}
	sim.SetFault(devicetest.FaultNone)
	sim.SetFiscalSerial("JI20099999")
	id, err := r.Read(context.Background(), "")
	if err != nil || id.FiscalSerial != "JI20099999" {
		t.Fatalf("after recovery: %+v, %v", id, err)
	}
}

// TestTriesAndNAKs: a silent device gets exactly `tries` sends per dialect;
// a damaged answer is NAKed and the device sends it again, up to `tries`
// times per send; a good answer is ACKed.
func TestTriesAndNAKs(t *testing.T) {
	for _, tries := range []int{1, 3} {
		sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultSilent})
		r := newReader(t, device.Config{Port: sim.Port(), Protocol: "crc16-arc", AckTimeout: 100 * time.Millisecond, Tries: tries})
		if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrTimeout) {
			t.Fatalf("silent: %v", err)
		}
		waitFor(t, "the requests", func() bool { return sim.Requests() >= tries })
		if n := sim.Requests(); n != tries {
			t.Errorf("silent device got %d sends, want %d", n, tries)
		}
	}
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultBadChecksum})
	r := newReader(t, device.Config{Port: sim.Port(), Protocol: "crc16-arc", AckTimeout: time.Second, Tries: 3})
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrChecksum) {
		t.Fatalf("bad checksum: %v", err)
	}
	// Each send: the device answers, is NAKed and answers again, 3 times
	// (its own tries); then the next send. 3 sends, 9 NAKs.
	naks := func() int { // NAK bytes between the requests (a request may hold 0x15 too)
		got := sim.Received()
		if len(got) < 43 {
			return 0
		}
		return bytes.Count(bytes.ReplaceAll(got, got[:43], nil), []byte{gmp3.NAK})
	}
	waitFor(t, "the NAKs", func() bool { return naks() >= 9 })
	if n := naks(); n != 9 || sim.Requests() != 3 {
		t.Errorf("agent sent %x: want 3 requests and 9 NAKs, got %d and %d", sim.Received(), sim.Requests(), n)
	}
	sim.SetFault(devicetest.FaultNone)
	before := len(sim.Received())
	if _, err := r.Read(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ACK", func() bool { g := sim.Received(); return len(g) > before && g[len(g)-1] == gmp3.ACK })
}
