//go:build windows

package device_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/tposagent/tposagent/device"
)

// holdEnv makes the test binary hold a handle without sharing (as the POS
// program holds its COM port) until its stdin closes.
const holdEnv = "DEVICE_TEST_HOLD_HANDLE"

func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		os.Exit(holdHandle(path))
	}
	os.Exit(m.Run())
}

func holdHandle(path string) int {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	// Share mode 0, as CreateFile must open a COM port.
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING, 0, 0)
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	defer windows.CloseHandle(h)
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestHeldPortBusyAtOnce: while another program holds the port (a handle
// opened without sharing, as every COM port is), the agent's read answers
// ErrBusy within a second and writes nothing; once the holder lets go it
// is no longer busy.
//
// The held object is a file opened by its \\.\ device path, not a COM
// port: Windows answers a second CreateFile on a held COM port with
// ERROR_ACCESS_DENIED, but wine 8 does not enforce sharing on the Unix
// devices behind its COM ports at all (a second open of COM1 succeeds
// there), while it does on files, answering ERROR_SHARING_VIOLATION. The
// agent maps both to ErrBusy (TestWindowsOpenErrorKinds), so this runs the
// same path under wine and on Windows.
func TestHeldPortBusyAtOnce(t *testing.T) {
	file := filepath.Join(t.TempDir(), "COM-held-by-pos")
	const content = "the POS's line"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	port := `\\.\` + file
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), holdEnv+"="+port)
	holder := startChild(t, cmd)
	r, err := device.NewReader(device.Config{Port: port, AckTimeout: 300 * time.Millisecond, Tries: 1})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = r.Read(context.Background(), "")
	took := time.Since(start)
	if !errors.Is(err, device.ErrBusy) {
		t.Errorf("held: err = %v, want busy", err)
	}
	if took > time.Second {
		t.Errorf("held: answered after %v, want within a second", took)
	}
	t.Logf("held by another program: %v after %v", err, took.Round(time.Millisecond))
	holder.stop()
	if holder.err != nil {
		t.Fatalf("holder: %v", holder.err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != content {
		t.Fatalf("the held object changed: %q %v", b, err)
	}
	// Let go: no longer busy (a file is no serial port, so no device).
	r2, err := device.NewReader(device.Config{Port: port, AckTimeout: 300 * time.Millisecond, Tries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Read(context.Background(), ""); errors.Is(err, device.ErrBusy) {
		t.Fatalf("after the holder closed: still busy: %v", err)
	}
}

// TestWindowsOpenErrorKinds: what CreateFile answers for a port another
// program holds — ERROR_ACCESS_DENIED on Windows (a COM port), and
// ERROR_SHARING_VIOLATION under wine — is busy.
func TestWindowsOpenErrorKinds(t *testing.T) {
	for _, e := range []error{windows.ERROR_ACCESS_DENIED, windows.ERROR_SHARING_VIOLATION, fmt.Errorf("open: %w", windows.ERROR_SHARING_VIOLATION)} {
		if got := device.OpenError(e); !errors.Is(got, device.ErrBusy) {
			t.Errorf("openError(%v) = %v, want busy", e, got)
		}
	}
}
