//go:build linux

package device_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
)

// Child modes of the test binary (see TestMain): a second program on the
// port, as a store's POS program would be.
const (
	holdEnv = "DEVICE_TEST_HOLD" // flock, uucp or excl: hold the port with that lock until stdin closes
	portEnv = "DEVICE_TEST_PORT"
	posEnv  = "DEVICE_TEST_POS" // open the port every 50 ms until stdin closes; print the waits as JSON
)

// posLineSpeed is the line speed the POS program sets (the agent uses
// 115200): a change shows that someone reconfigured the POS's line.
const posLineSpeed = unix.B9600

// holdPort is the child that holds port the way kind says, after setting
// the line as a POS does; it prints "ready" and keeps the port until its
// stdin closes.
func holdPort(kind, port string) int {
	fd, err := unix.Open(port, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer unix.Close(fd)
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		fmt.Println("tcgets:", err)
		return 1
	}
	tio.Cflag = tio.Cflag&^unix.CBAUD | posLineSpeed
	tio.Ispeed, tio.Ospeed = posLineSpeed, posLineSpeed
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, tio); err != nil {
		fmt.Println("tcsets:", err)
		return 1
	}
	var lockFile string
	switch kind {
	case "flock":
		err = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	case "excl":
		err = unix.IoctlSetInt(fd, unix.TIOCEXCL, 0)
	case "uucp":
		lockFile = filepath.Join("/run/lock", "LCK.."+filepath.Base(port))
		err = os.WriteFile(lockFile, fmt.Appendf(nil, "%10d\n", os.Getpid()), 0o644)
	default:
		err = errors.New("unknown lock kind " + kind)
	}
	if err != nil {
		fmt.Println("lock:", err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if lockFile != "" {
		os.Remove(lockFile)
	}
	return 0
}

// posWaits is what the POS child measured.
type posWaits struct {
	Tries, Refused int
	LongestWaitMS  int64 // from the first refused open of a streak to the open that worked
}

// posOpener is the child that opens port every 50 ms, as a POS program
// that opens its port per transaction, closing it at once, until its stdin
// closes; it prints how long it had to wait at most.
func posOpener(port string) int {
	stop := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	var w posWaits
	var streak time.Time
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	fmt.Println("ready")
	for {
		select {
		case <-stop:
			b, _ := json.Marshal(w)
			fmt.Println(string(b))
			return 0
		case <-tick.C:
		}
		w.Tries++
		now := time.Now()
		fd, err := unix.Open(port, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			w.Refused++
			if streak.IsZero() {
				streak = now
			}
			continue
		}
		unix.Close(fd)
		if !streak.IsZero() {
			w.LongestWaitMS = max(w.LongestWaitMS, time.Since(streak).Milliseconds())
			streak = time.Time{}
		}
	}
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", why)
	}
}

// peek opens port without changing anything (as root also in exclusive
// mode) and gives the fd to f.
func peek(t *testing.T, port string, f func(fd int)) {
	t.Helper()
	fd, err := unix.Open(port, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("peek at %s: %v", port, err)
	}
	defer unix.Close(fd)
	f(fd)
}

func termiosOf(t *testing.T, port string) unix.Termios {
	t.Helper()
	var tio unix.Termios
	peek(t, port, func(fd int) {
		p, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		tio = *p
	})
	return tio
}

func pendingInput(t *testing.T, port string) int {
	t.Helper()
	n := -1
	peek(t, port, func(fd int) {
		var err error
		if n, err = unix.IoctlGetInt(fd, unix.TIOCINQ); err != nil {
			t.Fatal(err)
		}
	})
	return n
}

// writtenByOthers is what reached the device from the port side since the
// last call, up to a marker byte the test writes itself last: everything
// before the marker was written by someone else (the agent).
func writtenByOthers(t *testing.T, sim *devicetest.Sim) []byte {
	t.Helper()
	const marker = 0xEE
	peek(t, sim.Port(), func(fd int) {
		if _, err := unix.Write(fd, []byte{marker}); err != nil {
			t.Fatal(err)
		}
	})
	from := seenBytes[sim]
	var got []byte
	waitFor(t, "the marker to reach the device", func() bool {
		got = sim.Received()
		return len(got) > from && got[len(got)-1] == marker
	})
	seenBytes[sim] = len(got)
	return got[from : len(got)-1]
}

// seenBytes is how much of each simulator's input writtenByOthers has
// returned (tests using it do not run in parallel).
var seenBytes = map[*devicetest.Sim]int{}

// TestLockedPortUntouched: a second program holds the port with each lock
// convention in turn (flock; a UUCP lock file in /run/lock; exclusive mode
// with the agent as root, which the kernel would let through), after
// setting its line to 9600 and with 17 bytes from the device unread. The
// agent answers busy at once, and the POS's line is as it was: 0 bytes
// written, the line settings unchanged, the 17 bytes still waiting.
// go.bug.st/serial (the code before) set 115200, flushed the input and
// wrote its frames in all three cases.
func TestLockedPortUntouched(t *testing.T) {
	needRoot(t, "exclusive mode binds everyone but root; the test shows the agent honours it as root, and writes /run/lock")
	for _, kind := range []string{"flock", "uucp", "excl"} {
		t.Run(kind, func(t *testing.T) {
			sim := startSim(t, devicetest.Options{Transport: devicetest.PTY, Fault: devicetest.FaultSilent})
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), holdEnv+"="+kind, portEnv+"="+sim.Port())
			holder := startChild(t, cmd)
			pending := []byte("17 unread bytes!!")
			if err := sim.Send(pending); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the device's bytes in the port's input queue", func() bool { return pendingInput(t, sim.Port()) == len(pending) })
			before := termiosOf(t, sim.Port())
			if before.Cflag&unix.CBAUD != posLineSpeed {
				t.Fatalf("the POS's line speed did not take: cflag %#o", before.Cflag)
			}

			r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: 300 * time.Millisecond})
			start := time.Now()
			_, err := r.Read(context.Background(), "JI20012345")
			took := time.Since(start)
			if !errors.Is(err, device.ErrBusy) {
				t.Errorf("err = %v, want busy", err)
			}
			if took > time.Second {
				t.Errorf("busy answer after %v, want at once", took)
			}
			if !strings.Contains(fmt.Sprint(err), "held by another program") {
				t.Errorf("error does not say another program holds the port: %v", err)
			}
			if w := writtenByOthers(t, sim); len(w) != 0 {
				t.Errorf("agent wrote %d bytes into the POS's line: %x", len(w), w)
			}
			if after := termiosOf(t, sim.Port()); after != before {
				t.Errorf("line settings changed:\nbefore %+v\nafter  %+v", before, after)
			}
			if n := pendingInput(t, sim.Port()); n != len(pending) {
				t.Errorf("%d of the POS's %d unread bytes left", n, len(pending))
			}
			holder.stop()
			t.Logf("%s: busy after %v: %v", kind, took.Round(time.Microsecond), err)
		})
	}
}

// TestHeldPortHoldsAllThreeLocks: while the agent holds a port it holds
// every lock a POS may check — flock, the UUCP lock file with its PID, and
// exclusive mode — and gives all of them and the line settings back when
// it closes it. A stale lock file (its process is gone) is removed.
func TestHeldPortHoldsAllThreeLocks(t *testing.T) {
	needRoot(t, "writes /run/lock")
	sim := startSim(t, devicetest.Options{Transport: devicetest.PTY, Fault: devicetest.FaultSilent})
	lock := filepath.Join("/run/lock", "LCK.."+filepath.Base(sim.Port()))
	// A lock left by a process that is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lock, fmt.Appendf(nil, "%10d\n", dead.Process.Pid), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(lock) })
	before := termiosOf(t, sim.Port())

	r := newReader(t, device.Config{Port: sim.Port(), Protocol: "crc16-arc", AckTimeout: 800 * time.Millisecond, Tries: 1, HoldMax: time.Second})
	done := make(chan error, 1)
	go func() {
		_, err := r.Read(context.Background(), "")
		done <- err
	}()
	waitFor(t, "the request", func() bool { return sim.Requests() >= 1 })
	peek(t, sim.Port(), func(fd int) {
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Errorf("flock while the agent holds the port: %v, want EWOULDBLOCK", err)
		}
		if v, err := unix.IoctlGetInt(fd, unix.TIOCGEXCL); err != nil || v != 1 {
			t.Errorf("exclusive mode while the agent holds the port: %d %v", v, err)
		}
	})
	if b, err := os.ReadFile(lock); err != nil || string(b) != fmt.Sprintf("%10d\n", os.Getpid()) {
		t.Errorf("lock file %s: %q %v, want our PID in HDB format", lock, b, err)
	}
	if err := <-done; !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("silent device: %v", err)
	}
	peek(t, sim.Port(), func(fd int) {
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Errorf("flock after the agent closed: %v", err)
		}
		if v, _ := unix.IoctlGetInt(fd, unix.TIOCGEXCL); v != 0 {
			t.Error("exclusive mode left on")
		}
	})
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file left behind: %v", err)
	}
	if after := termiosOf(t, sim.Port()); after != before {
		t.Errorf("line settings not given back:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestPOSWaitsAtMostHoldMax: a POS program (not root, so exclusive mode
// binds it) opens its port every 50 ms, as vendor libraries that open per
// transaction do, while the agent asks a silent device with the default
// holds. It never waits longer than hold_max (+0.5 s). The code before
// held the port for the whole probe (3 tries × 4.5 s per dialect).
func TestPOSWaitsAtMostHoldMax(t *testing.T) {
	sim := startSim(t, devicetest.Options{Transport: devicetest.PTY, Fault: devicetest.FaultSilent})
	if err := os.Chmod(sim.Port(), 0o666); err != nil {
		t.Fatal(err)
	}
	pos := startChild(t, nobodyCommand(t, posEnv+"="+sim.Port()))
	// The defaults, with a budget for three opens: 1.5 s + 5 s + 1.5 s +
	// 5 s + 1.5 s.
	r := newReader(t, device.Config{Port: sim.Port(), Tries: 1, ReopenGap: device.DefaultReopenGap, ProbeBudget: 16 * time.Second})
	start := time.Now()
	_, err := r.Read(context.Background(), "")
	took := time.Since(start)
	if !errors.Is(err, device.ErrTimeout) {
		t.Fatalf("silent device: %v", err)
	}
	var w posWaits
	out := pos.stop()
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("POS child said %q: %v", out, err)
	}
	if w.Refused == 0 {
		t.Fatalf("the POS was never refused (%d tries): the agent did not hold the port in exclusive mode", w.Tries)
	}
	if limit := device.DefaultHoldMax + 500*time.Millisecond; time.Duration(w.LongestWaitMS)*time.Millisecond > limit {
		t.Errorf("the POS waited up to %d ms, limit %v", w.LongestWaitMS, limit)
	}
	if n := checkOnlyEcho(t, writtenByOthers(t, sim)); n != 3 {
		t.Errorf("device got %d frames, want 3 (one per dialect, each in its own open)", n)
	}
	t.Logf("RESULT pos_longest_wait_ms=%d hold_max=%v tries=%d refused=%d probe=%v", w.LongestWaitMS, device.DefaultHoldMax, w.Tries, w.Refused, took.Round(time.Millisecond))
}

// TestScanSkipsBuiltInUARTs: with the default device.scan ("usb") auto
// does not touch a port named like a built-in UART (ttyS0, where receipt
// printers and pole displays live), only a USB serial one; with "all" it
// does. The port list is injected; the names are links to simulated
// devices.
func TestScanSkipsBuiltInUARTs(t *testing.T) {
	uart := startSim(t, devicetest.Options{Transport: devicetest.PTY, Fault: devicetest.FaultSilent})
	usb := startSim(t, devicetest.Options{Transport: devicetest.PTY, FiscalSerial: "JI20077777"})
	dir := t.TempDir()
	ttyS0, ttyUSB0 := filepath.Join(dir, "ttyS0"), filepath.Join(dir, "ttyUSB0")
	for link, target := range map[string]string{ttyS0: uart.Port(), ttyUSB0: usb.Port()} {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	list := []device.PortInfo{{Name: ttyS0}, {Name: ttyUSB0}} // the UART first, as the enumerator sorts them
	r := newReader(t, device.Config{AckTimeout: 200 * time.Millisecond, ListPorts: func() ([]device.PortInfo, error) { return list, nil }})
	id, err := r.Read(context.Background(), "")
	if err != nil || id.FiscalSerial != "JI20077777" || id.Port != ttyUSB0 {
		t.Fatalf("got %+v, %v", id, err)
	}
	if w := writtenByOthers(t, uart); len(w) != 0 {
		t.Fatalf("the built-in UART got %d bytes: %x", len(w), w)
	}
	// Only the UART listed: nothing to scan, and the error says how to
	// scan it.
	r = newReader(t, device.Config{AckTimeout: 200 * time.Millisecond, ListPorts: func() ([]device.PortInfo, error) { return list[:1], nil }})
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrNoDevice) || !strings.Contains(err.Error(), `device.scan = "all"`) {
		t.Fatalf("only a UART listed: %v", err)
	}
	if w := writtenByOthers(t, uart); len(w) != 0 {
		t.Fatalf("the built-in UART got %d bytes: %x", len(w), w)
	}
	// scan = "all": the UART is asked, one frame per dialect, and the log
	// says so with the bytes sent.
	var logs bytes.Buffer
	r = newReader(t, device.Config{AckTimeout: 200 * time.Millisecond, Scan: device.ScanAll, ListPorts: func() ([]device.PortInfo, error) { return list[:1], nil },
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if _, err := r.Read(context.Background(), ""); !errors.Is(err, device.ErrNoDevice) {
		t.Fatalf("scan all: %v", err)
	}
	w := writtenByOthers(t, uart)
	if n := checkOnlyEcho(t, w); n != 3 {
		t.Fatalf("scan all: the silent UART got %d frames, want one per dialect", n)
	}
	if want := fmt.Sprintf("msg=\"port touched\" port=%s opens=1 bytes_sent=%d", ttyS0, len(w)); !strings.Contains(logs.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, logs.String())
	}
}
