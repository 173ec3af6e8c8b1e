//go:build linux

package device_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
)

// TestStalledSerialWrite: a device that stops reading makes a big write
// block for real on a pty. The Linux port is pollable (a non-blocking fd
// under Go's poller), so the write ends at its own deadline with a
// timeout — no goroutine is left behind (go.bug.st/serial's Unix write had
// no timeout; there the watcher abandoned it and Stuck counted it).
func TestStalledSerialWrite(t *testing.T) {
	sim := startSim(t, devicetest.Options{Fault: devicetest.FaultDeaf})
	const d = 200 * time.Millisecond
	took, err := device.StalledWrite(sim.Port(), 1<<20, d)
	if !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	if limit := d + 500*time.Millisecond; took > limit {
		t.Fatalf("write returned after %v, limit %v", took, limit)
	}
	if n := device.Stuck(); n != 0 {
		t.Fatalf("%d goroutines left behind", n)
	}
	t.Logf("blocked 1 MiB write ended after %v at its deadline", took.Round(time.Millisecond))
}
