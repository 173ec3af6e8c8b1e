package device_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
)

// TestHoldsAndGapsTCP: over TCP (an Ethernet ÖKC, where the POS may need
// the one connection the device accepts) one connection lasts at most
// HoldMax, and the next one comes at least ReopenGap after it closed; the
// tries of the probe spread over the opens. The code before kept one
// connection for the whole probe.
func TestHoldsAndGapsTCP(t *testing.T) {
	const (
		ack  = 400 * time.Millisecond
		hold = 600 * time.Millisecond
		gap  = time.Second
	)
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultSilent})
	r := newReader(t, device.Config{Port: sim.Port(), Protocol: "crc16-arc", AckTimeout: ack, Tries: 3, HoldMax: hold, ReopenGap: gap})
	start := time.Now()
	_, err := r.Read(context.Background(), "")
	took := time.Since(start)
	if !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("silent device: %v", err)
	}
	waitFor(t, "the last connection to end", func() bool {
		s := sim.Sessions()
		return len(s) > 0 && !s[len(s)-1].Closed.IsZero()
	})
	ss := sim.Sessions()
	if len(ss) != 3 || sim.Requests() != 3 {
		t.Fatalf("%d connections, %d requests; want 3 of each (a 400 ms ACK wait twice does not fit a 600 ms hold)", len(ss), sim.Requests())
	}
	// The device notices a close within ~20 ms (its read slice): the
	// connection seen from there is a little longer, the gap a little
	// shorter than the agent's.
	const slack = 150 * time.Millisecond
	for i, s := range ss {
		if d := s.Closed.Sub(s.Opened); d > hold+slack {
			t.Errorf("connection %d lasted %v, hold_max %v", i+1, d, hold)
		}
		if i > 0 {
			if g := s.Opened.Sub(ss[i-1].Closed); g < gap-slack {
				t.Errorf("gap before connection %d: %v, reopen_gap %v", i+1, g, gap)
			}
		}
	}
	t.Logf("3 connections in %v: %v", took.Round(time.Millisecond), ss)
}

// TestHoldCutsTheWait: an ACK wait longer than the hold is cut at the
// hold: the port is never open longer than HoldMax, whatever ack_timeout
// says.
func TestHoldCutsTheWait(t *testing.T) {
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultSilent})
	r := newReader(t, device.Config{Port: sim.Port(), Protocol: "crc16-arc", AckTimeout: 5 * time.Second, Tries: 1, HoldMax: 300 * time.Millisecond})
	start := time.Now()
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("silent device: %v", err)
	}
	if took := time.Since(start); took > 800*time.Millisecond {
		t.Fatalf("read took %v with a 300 ms hold", took)
	}
}

// TestGapBetweenReads: the gap holds across reads too: a second read of a
// port right after the first waits until ReopenGap has passed since the
// first closed it.
func TestGapBetweenReads(t *testing.T) {
	const gap = 700 * time.Millisecond
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP})
	r := newReader(t, device.Config{Port: sim.Port(), ReopenGap: gap})
	if _, err := r.Read(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two connections", func() bool { s := sim.Sessions(); return len(s) == 2 })
	waitFor(t, "the first to end", func() bool { return !sim.Sessions()[0].Closed.IsZero() })
	ss := sim.Sessions()
	if g := ss[1].Opened.Sub(ss[0].Closed); g < gap-150*time.Millisecond {
		t.Fatalf("second read opened the port %v after the first closed it, gap %v", g, gap)
	}
}

// TestKnownPortNotScanned: with a known port (the POS's report via
// ReadVia, or the port that answered last) auto asks only that port; a
// silent or busy known port is no reason to write into the others. Only a
// known port that is gone starts a scan.
func TestKnownPortNotScanned(t *testing.T) {
	other := startSim(t, devicetest.Options{Transport: devicetest.TCP})
	known := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultSilent})
	list := []device.PortInfo{{Name: other.Port(), IsUSB: true}}
	r := newReader(t, device.Config{AckTimeout: 100 * time.Millisecond, Tries: 1, CacheDir: t.TempDir(),
		ListPorts: func() ([]device.PortInfo, error) { return list, nil }})
	if _, err := r.ReadVia(context.Background(), "", known.Port()); !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("silent known port: %v", err)
	}
	if len(other.Sessions()) != 0 {
		t.Fatal("a port other than the POS's was opened")
	}
	// Gone: a port that no longer exists → scan, and the one found is
	// remembered.
	gone := filepath.Join(t.TempDir(), "ttyUSB9")
	id, err := r.ReadVia(context.Background(), "", gone)
	if err != nil || id.Port != other.Port() {
		t.Fatalf("known port gone: %+v %v", id, err)
	}
	// The remembered winner is asked alone, even when silent now.
	other.SetFault(devicetest.FaultSilent)
	list = append(list, device.PortInfo{Name: known.Port(), IsUSB: true})
	before := known.Requests()
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("silent remembered port: %v", err)
	}
	if known.Requests() != before {
		t.Fatal("auto scanned other ports although the remembered one exists")
	}
}
