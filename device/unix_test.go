//go:build linux

package device_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"go.bug.st/serial"
)

// childEnv makes the test binary probe one port and print the error kind:
// the busy and permission cases need an unprivileged process, since root
// may open anything.
const childEnv = "DEVICE_TEST_CHILD_PROBE"

func TestMain(m *testing.M) {
	if kind := os.Getenv(holdEnv); kind != "" {
		os.Exit(holdPort(kind, os.Getenv(portEnv)))
	}
	if port := os.Getenv(posEnv); port != "" {
		os.Exit(posOpener(port))
	}
	if port := os.Getenv(childEnv); port != "" {
		r, err := device.NewReader(device.Config{Port: port, AckTimeout: 300 * time.Millisecond, Tries: 1})
		if err == nil {
			_, err = r.Read(context.Background(), "")
		}
		kind := "other"
		switch {
		case err == nil:
			kind = "ok"
		case errors.Is(err, device.ErrBusy):
			kind = "busy"
		case errors.Is(err, device.ErrPermission):
			kind = "permission"
		}
		fmt.Printf("%s\n%v\n", kind, err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// probeAsNobody runs the probe in a copy of the test binary as user nobody.
func probeAsNobody(t *testing.T, port string) (kind, msg string) {
	t.Helper()
	cmd := nobodyCommand(t, childEnv+"="+port)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("cannot run as nobody here: %v", err)
	}
	kind, msg, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return kind, msg
}

// nobodyCommand is a copy of the test binary (in a directory user nobody
// may enter) to be run as nobody with env.
func nobodyCommand(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to an unprivileged user")
	}
	dir, err := os.MkdirTemp("", "devicetest-child-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "device.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	return cmd
}

// TestBusyPort holds the port open (exclusively, as the serial library
// does) while an unprivileged process probes it, as the POS program would.
func TestBusyPort(t *testing.T) {
	sim := startSim(t, devicetest.Options{})
	if err := os.Chmod(sim.Port(), 0o666); err != nil {
		t.Fatal(err)
	}
	p, err := serial.Open(sim.Port(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	kind, msg := probeAsNobody(t, sim.Port())
	p.Close()
	if kind != "busy" {
		t.Fatalf("got %s: %s", kind, msg)
	}
	// Released, the same process reads it.
	if kind, msg := probeAsNobody(t, sim.Port()); kind != "ok" {
		t.Fatalf("after release got %s: %s", kind, msg)
	}
}

func TestPermissionDenied(t *testing.T) {
	sim := startSim(t, devicetest.Options{})
	if err := os.Chmod(sim.Port(), 0o600); err != nil {
		t.Fatal(err)
	}
	if kind, msg := probeAsNobody(t, sim.Port()); kind != "permission" {
		t.Fatalf("got %s: %s", kind, msg)
	}
	if g := device.PortGroup(sim.Port()); g == "" {
		t.Fatal("no group named for the port")
	}
}
