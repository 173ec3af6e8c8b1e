package devicetest_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/device/gmp3"
	"github.com/tposagent/tposagent/internal/testrig"
	"go.bug.st/serial"
)

// TestCloseIsPrompt closes the device in the middle of every fault while
// the line is still open on the agent's side, and checks Close returns fast
// and the agent's side sees the line end.
func TestCloseIsPrompt(t *testing.T) {
	for _, tr := range []string{devicetest.PTY, devicetest.TCP} {
		for _, f := range devicetest.Faults() {
			t.Run(tr+"/"+f.String(), func(t *testing.T) {
				sim, err := devicetest.Start(devicetest.Options{Transport: tr, Fault: f, ByteDelay: 50 * time.Millisecond})
				if errors.Is(err, devicetest.ErrUnsupported) {
					t.Skipf("the pty rows need Unix pseudo-terminals, which Windows (and so wine) lacks; the TCP rows run here: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				req, _ := gmp3.EchoRequest(gmp3.ARC, "000000000000", 7, time.Now())
				var read func([]byte) (int, error)
				if tr == devicetest.TCP {
					c, err := net.Dial("tcp", strings.TrimPrefix(sim.Port(), "tcp://"))
					if err != nil {
						t.Fatal(err)
					}
					defer c.Close()
					c.Write(req)
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
					read = c.Read
				} else {
					p, err := serial.Open(sim.Port(), &serial.Mode{BaudRate: 115200})
					if err != nil {
						t.Fatal(err)
					}
					defer p.Close()
					p.Write(req)
					p.SetReadTimeout(time.Second)
					read = p.Read
				}
				if f != devicetest.FaultDeaf {
					testrig.WaitFor(t, "the request", 3*time.Second, func() bool { return len(sim.Received()) >= len(req) })
				}
				start := time.Now()
				sim.Close()
				sim.Close() // idempotent
				if took := time.Since(start); took > 1500*time.Millisecond {
					t.Fatalf("close took %v", took)
				}
				buf := make([]byte, 1<<17)
				for {
					n, err := read(buf)
					if err != nil {
						break // hung up, as wanted
					}
					if n == 0 {
						t.Fatal("line still open after Close")
					}
				}
			})
		}
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
		if g, err := devicetest.ParseFault(s); err != nil || g != f {
			t.Fatalf("parse %q: %v %v", s, g, err)
		}
	}
	if len(seen) != 15 {
		t.Fatalf("%d faults", len(seen))
	}
}
