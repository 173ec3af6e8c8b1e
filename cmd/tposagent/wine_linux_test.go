//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
)

// TestWineCOMProbe runs the Windows build under wine against the simulated
// ÖKC on a pty mapped to a COM port (a dosdevices link in the wine prefix):
// the port opens, the request reaches the device, and the probe ends within
// its limit whatever wine's serial emulation does. Wine's overlapped
// ReadFile on a pty ignores the COMMTIMEOUTS the serial library sets and
// completes only when cancelled, so there the read is abandoned by the
// watcher (port driver stalled) rather than answered. Set
// TPOSAGENT_WINDOWS_EXE to a prebuilt tposagent.exe to skip the build.
func TestWineCOMProbe(t *testing.T) {
	prefix := os.Getenv("WINEPREFIX")
	wine, err := exec.LookPath("wine")
	if prefix == "" || err != nil {
		t.Skip("wine is not set up here (needs WINEPREFIX and wine on PATH)")
	}
	if _, err := os.Stat(filepath.Join(prefix, "dosdevices")); err != nil {
		t.Skipf("wine prefix without dosdevices: %v", err)
	}
	exe := os.Getenv("TPOSAGENT_WINDOWS_EXE")
	if exe == "" {
		exe = filepath.Join(t.TempDir(), "tposagent.exe")
		build := exec.Command("go", "build", "-o", exe, ".")
		build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build the Windows binary: %v\n%s", err, out)
		}
	}
	sim, err := devicetest.Start(devicetest.Options{FiscalSerial: "JI20012345"})
	if err != nil {
		t.Skipf("no pty for the simulated device: %v", err)
	}
	defer sim.Close()
	com := fmt.Sprintf("com%d", 100+os.Getpid()%150)
	link := filepath.Join(prefix, "dosdevices", com)
	if err := os.Symlink(sim.Port(), link); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(link)

	const ack = time.Second
	trace := filepath.Join(t.TempDir(), "com.trace")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, wine, exe, "device", "probe", "--port", strings.ToUpper(com),
		"--protocol", "crc16-arc", "--tries", "1", "--ack-timeout", ack.String(), "--trace", trace)
	out, err := cmd.CombinedOutput()
	t.Logf("wine tposagent.exe device probe --port %s: %v\n%s", strings.ToUpper(com), err, out)

	if sim.Requests() < 1 {
		t.Fatalf("the request never reached the simulated device (received %x)", sim.Received())
	}
	f, ferr := os.Open(trace)
	if ferr != nil {
		t.Fatal(ferr)
	}
	events, comments, ferr := device.ReadTrace(f)
	f.Close()
	if ferr != nil {
		t.Fatal(ferr)
	}
	var open float64 = -1
	re := regexp.MustCompile(`closed after ([0-9.]+) s`)
	for _, c := range comments {
		if m := re.FindStringSubmatch(c); m != nil {
			open, _ = strconv.ParseFloat(m[1], 64)
		}
	}
	if open < 0 {
		t.Fatalf("the trace does not say when the port closed: %q", comments)
	}
	// One send: the ACK wait and the answer wait, the watcher's grace and
	// the close grace, and slack for wine.
	limit := (2*ack + 2*time.Second + 500*time.Millisecond + 2*time.Second).Seconds()
	if open > limit {
		t.Fatalf("the port was open %.1f s, limit %.1f s", open, limit)
	}
	outcome := "read JI20012345"
	if err != nil {
		outcome = "typed error: " + strings.TrimSpace(string(out))
		if !strings.Contains(string(out), "stalled") && !strings.Contains(string(out), "no answer") {
			t.Fatalf("untyped failure: %s", out)
		}
	} else if !strings.HasPrefix(string(out), "JI20012345") {
		t.Fatalf("stdout %q", out)
	}
	t.Logf("RESULT wine_com_probe requests=%d port_open_s=%.3f limit_s=%.1f events=%d outcome=%q", sim.Requests(), open, limit, len(events), outcome)
}
