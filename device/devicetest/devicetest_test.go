package devicetest_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/device/gmp3"
	"go.bug.st/serial"
)

// TestCloseIsPrompt closes the device in the middle of every fault, while
// the port is still open on the agent's side, and checks Close returns fast
// and removes the pseudo-terminal.
func TestCloseIsPrompt(t *testing.T) {
	for _, f := range devicetest.Faults() {
		t.Run(f.String(), func(t *testing.T) {
			sim, err := devicetest.Start(devicetest.Options{Fault: f, ByteDelay: 50 * time.Millisecond})
			if errors.Is(err, devicetest.ErrUnsupported) {
				t.Skip(err)
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := serial.Open(sim.Port(), &serial.Mode{BaudRate: 115200})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := p.Write(gmp3.EchoRequest(7, time.Now())); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(3 * time.Second)
			for sim.Requests() < 1 {
				if time.Now().After(deadline) {
					t.Fatal("request never seen")
				}
				time.Sleep(5 * time.Millisecond)
			}
			start := time.Now()
			sim.Close()
			sim.Close() // idempotent
			if took := time.Since(start); took > 1500*time.Millisecond {
				t.Fatalf("close took %v", took)
			}
			// The device is gone: the agent's open port reads a hang-up.
			p.SetReadTimeout(time.Second)
			buf := make([]byte, 1<<17)
			for {
				n, err := p.Read(buf)
				if err != nil {
					break // hung up, as wanted
				}
				if n == 0 {
					t.Fatal("port still open after Close")
				}
			}
		})
	}
}

func TestFaultNames(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range devicetest.Faults() {
		s := f.String()
		if s == "" || s == "fault(?)" || seen[s] {
			t.Fatalf("fault %d named %q", int(f), s)
		}
		seen[s] = true
	}
	if len(seen) != 9 {
		t.Fatalf("%d faults", len(seen))
	}
}
