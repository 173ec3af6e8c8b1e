//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/internal/till"
)

// wineDirEnv names a directory prepared by .ci/wine/setup.sh (it holds the
// ProcessPrng DLL wine 8 lacks); .ci/windows sets it.
const wineDirEnv = "TPOSAGENT_WINE_DIR"

// winePrefix is a fresh wine prefix of the test's own, with a keeper: the
// first wine process, alive for the whole test. wine starts its service
// manager (services.exe) from the first process, so the services inherit
// the keeper's stderr and WINEDEBUG, and the Event Log text, which wine 8
// shows only as the eventlog debug channel, lands in keeper (and so does
// the service manager's FIXME for the recovery actions it does not store).
type winePrefix struct {
	t      *testing.T
	env    []string // WINEPREFIX, DISPLAY, WINEDEBUG=-all
	keeper *testrig.Buffer
}

// newWinePrefix makes the prefix; ports maps COM port names to Unix
// devices (HKLM\Software\Wine\Ports), set before wine's session starts.
func newWinePrefix(t *testing.T, dll string, ports map[string]string) *winePrefix {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "prefix")
	base := append(os.Environ(), "WINEPREFIX="+prefix, "DISPLAY=")
	w := &winePrefix{t: t, env: append(base, "WINEDEBUG=-all")}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	steps := [][]string{{"wine", "wineboot", "-i"}}
	for name, dev := range ports {
		steps = append(steps, []string{"wine", "reg", "add", `HKLM\Software\Wine\Ports`, "/v", name, "/t", "REG_SZ", "/d", dev, "/f"})
	}
	for _, args := range append(steps, []string{"wineserver", "-w"}) {
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = w.env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	b, err := os.ReadFile(dll)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(prefix, "drive_c", "windows", "system32", "bcryptprimitives.dll"), b, 0o644); err != nil {
		t.Fatal(err)
	}

	// The keeper: cmd.exe reading commands from a pipe until it is closed.
	w.keeper = &testrig.Buffer{}
	keeper := exec.Command("wine", "cmd.exe")
	keeper.Env = append(base, "WINEDEBUG=-all,+eventlog,fixme+service")
	keeper.Stderr = w.keeper
	stdin, err := keeper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := keeper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := keeper.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stdout)
		said := false
		for sc.Scan() {
			if !said && strings.HasSuffix(strings.TrimSpace(sc.Text()), "keeper-ready") { // after the prompt
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	t.Cleanup(func() {
		stdin.Close() // cmd.exe ends at the end of its input
		<-drained
		keeper.Wait()
		stop := exec.Command("wineserver", "-k") // this prefix's server only
		stop.Env = w.env
		stop.Run()
		wait := exec.Command("wineserver", "-w")
		wait.Env = w.env
		wait.Run()
	})
	io.WriteString(stdin, "echo keeper-ready\r\n")
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("wine keeper ended before it was ready\n%s", w.keeper)
		}
	case <-time.After(time.Minute):
		t.Fatalf("wine keeper not ready within a minute\n%s", w.keeper)
	}
	return w
}

// run runs a wine program with the quiet environment and returns its
// combined output and exit error.
func (w *winePrefix) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wine", args...)
	cmd.Env = w.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// wineSetup skips t unless wine is prepared, and builds the windows/amd64
// agent; it returns the prepared directory and the binary.
func wineSetup(t *testing.T) (dir, exe string) {
	t.Helper()
	dir = os.Getenv(wineDirEnv)
	if dir == "" {
		t.Skipf("%s is not set: run .ci/windows (or .ci/wine/setup.sh DIR and set %s=DIR) to prepare wine", wineDirEnv, wineDirEnv)
	}
	for _, tool := range []string{"wine", "wineboot", "wineserver"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: apt-get install wine wine64 (or run .ci/windows)", tool)
		}
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("wine runs the windows/amd64 build on amd64 hosts only")
	}
	exe = filepath.Join(t.TempDir(), "tposagent.exe")
	build := exec.Command("go", "build", "-o", exe, till.MainPackage)
	build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build windows/amd64: %v\n%s", err, out)
	}
	return dir, exe
}

// TestCOMPortUnderWine maps COM5 to the simulated ÖKC's pseudo-terminal
// (wine's HKLM\Software\Wine\Ports) and runs the windows/amd64 agent's
// serial code on it: the port is listed (the detailed enumerator returns
// nothing under wine, so the plain list must be used), the probe's request
// reaches the simulator, and the probe ends within its limit whatever
// wine's serial driver does (its overlapped ReadFile may never return), for
// a device that answers and for one that stays silent.
func TestCOMPortUnderWine(t *testing.T) {
	dir, exe := wineSetup(t)
	sim, err := devicetest.Start(devicetest.Options{FiscalSerial: "JI20012345"})
	if err != nil {
		t.Skipf("no simulated device on a pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	w := newWinePrefix(t, filepath.Join(dir, "bcryptprimitives.dll"), map[string]string{"COM5": sim.Port()})

	out, err := w.run(time.Minute, exe, "device", "ports")
	if err != nil || !strings.Contains(out, "COM5") {
		t.Errorf("device ports does not list COM5 (mapped to %s): %v\n%s", sim.Port(), err, out)
	}
	// The limit: three tries of the default answer timeout, and slack for
	// wine starting the process on a busy machine.
	const limit = 20 * time.Second
	for _, f := range []devicetest.Fault{devicetest.FaultNone, devicetest.FaultSilent} {
		sim.SetFault(f)
		before := sim.Requests()
		t0 := time.Now()
		out, err := w.run(2*limit, exe, "device", "probe", "--port", "COM5")
		took := time.Since(t0)
		reached := sim.Requests() - before
		t.Logf("RESULT wine-com fault=%s took=%s requests_reached=%d exit=%v output=%q", f, took.Round(time.Millisecond), reached, err, strings.TrimSpace(out))
		if took > limit {
			t.Errorf("fault %s: the probe took %v, over its limit %v", f, took, limit)
		}
		if reached == 0 {
			t.Errorf("fault %s: no request reached the simulator through COM5", f)
		}
	}
}

// TestServiceUnderWine runs the windows/amd64 build under wine's service
// control manager as a store's IT person would: install (which registers
// "run --service --config …" and starts it), the local API answers, the
// warnings reach the Event Log, stop, uninstall. Wine refuses delayed start
// and the recovery flag (ChangeServiceConfig2 levels 3 and 4): install says
// so and carries on.
func TestServiceUnderWine(t *testing.T) {
	dir, exe := wineSetup(t)
	w := newWinePrefix(t, filepath.Join(dir, "bcryptprimitives.dll"), nil)

	f := newFixture(t)
	f.cfg.Device.Port, f.cfg.Device.FiscalSerial = "none", "JI20012345" // no COM port under wine here
	f.cfg.API.Listen = "0.0.0.0:0"                                      // a warning for the Event Log
	if err := os.WriteFile(f.cfgPath, config.Encode(&f.cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	winCfg := "Z:" + f.cfgPath // wine's Z: is the Unix root
	t.Cleanup(func() { w.run(time.Minute, exe, "--config", winCfg, "uninstall") })

	t0 := time.Now()
	out, err := w.run(2*time.Minute, exe, "install", "--unattended", "--delayed-start", "--config", winCfg)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	t.Logf("install:\n%s", out)
	for _, want := range []string{"registered (windows-service", "service:   started"} {
		if !strings.Contains(out, want) {
			t.Fatalf("install output lacks %q:\n%s", want, out)
		}
	}
	// Wine 8 answers ERROR_INVALID_LEVEL to delayed start: said, not fatal.
	if !strings.Contains(out, "does not support delayed automatic start") {
		t.Errorf("install did not say the service manager refused delayed start:\n%s", out)
	}

	var c *localapi.Client
	testrig.WaitFor(t, "the service's local API", 30*time.Second, func() bool {
		cl, err := apiClient(&env{configPath: f.cfgPath})
		if err != nil {
			return false
		}
		if _, err := cl.Status(context.Background()); err != nil {
			return false
		}
		c = cl
		return true
	})
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RESULT wine-service install_to_api=%s fiscal_serial=%s", time.Since(t0).Round(time.Millisecond), st.Device.FiscalSerial)

	// The warning at start reached the Event Log (wine prints it on the
	// eventlog channel of the service manager's stderr, the keeper's).
	const event = `ReportEventW L"api.listen 0.0.0.0:0 is not loopback`
	testrig.WaitFor(t, "the Event Log entry", 15*time.Second, func() bool { return strings.Contains(w.keeper.String(), event) })

	out, err = w.run(time.Minute, exe, "--config", winCfg, "stop")
	if err != nil || !strings.Contains(out, "stop: done") {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	if _, err := c.Status(context.Background()); !errors.Is(err, localapi.ErrNotRunning) {
		t.Fatalf("local API after stop: %v, want ErrNotRunning", err)
	}
	logText, _ := os.ReadFile(filepath.Join(f.dir, "data", "tposagent.log"))
	if !strings.Contains(string(logText), `msg="tposagent stopped"`) {
		t.Errorf("the agent did not log a clean stop:\n%s", logText)
	}
	out, err = w.run(time.Minute, exe, "--config", winCfg, "uninstall")
	if err != nil || !strings.Contains(out, "stopped and removed") {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	out, err = w.run(time.Minute, exe, "--config", winCfg, "start")
	if err == nil || !strings.Contains(out, "not installed") {
		t.Fatalf("start after uninstall: %v\n%s", err, out)
	}
}
