//go:build linux

package device_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
)

// TestStalledSerialWrite: go.bug.st/serial's Unix write has no timeout and
// blocks while the line does not drain. A device that stops reading makes a
// big write block for real on a pty; the watcher abandons it at its deadline.
// Closing the port does not wake a blocked tty write on Linux, so the call
// is counted by Stuck until the device reads again.
func TestStalledSerialWrite(t *testing.T) {
	sim := startSim(t, devicetest.Options{Fault: devicetest.FaultDeaf})
	const d = 200 * time.Millisecond
	took, err := device.StalledWrite(sim.Port(), 1<<20, d)
	if !errors.Is(err, device.ErrStalled) {
		t.Fatalf("err = %v", err)
	}
	if limit := d + 3*time.Second; took > limit { // the watcher's grace, the close grace, slack
		t.Fatalf("write returned after %v, limit %v", took, limit)
	}
	t.Logf("blocked 1 MiB write abandoned after %v; stuck goroutines %d", took.Round(time.Millisecond), device.Stuck())
	sim.SetFault(devicetest.FaultNone) // the device reads again: the write drains
	waitFor(t, "the abandoned write to return", func() bool { return device.Stuck() == 0 })
}
