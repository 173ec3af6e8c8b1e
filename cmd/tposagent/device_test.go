package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
)

func runDevice(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	err = run(context.Background(), e, append([]string{"device"}, args...))
	return out.String(), errb.String(), err
}

func TestDeviceProbeCommand(t *testing.T) {
	sim, err := devicetest.Start(devicetest.Options{FiscalSerial: "JI20012345", Brand: "Ödeme Şirketi"})
	if errors.Is(err, devicetest.ErrUnsupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	out, errOut, err := runDevice(t, "probe", "--port", sim.Port())
	if err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(out, "\n", 2)[0]; first != "JI20012345" {
		t.Fatalf("stdout %q", out)
	}
	if !strings.Contains(errOut, "Ödeme Şirketi") || !strings.Contains(errOut, sim.Port()) {
		t.Fatalf("stderr %q", errOut)
	}

	out, _, err = runDevice(t, "probe", "--port", sim.Port(), "--json")
	if err != nil {
		t.Fatal(err)
	}
	var id device.Identity
	if err := json.Unmarshal([]byte(out), &id); err != nil || id.FiscalSerial != "JI20012345" || id.Source != device.SourceDevice || id.ECRSerial != "JHWE20000079" {
		t.Fatalf("json %q: %+v %v", out, id, err)
	}

	sim.SetFault(devicetest.FaultSilent)
	out, _, err = runDevice(t, "probe", "--port", sim.Port(), "--timeout", "100ms", "--tries", "1")
	if err == nil || out != "" || !strings.Contains(err.Error(), "check the cable") || report(&bytes.Buffer{}, err) != exitError {
		t.Fatalf("silent: out %q err %v", out, err)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("error is not one line: %q", err)
	}
}

func TestDeviceProbeErrorsAreActionable(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{device.ErrBusy, "POS program probably holds"},
		{device.ErrBadFrame, "wrong port or wrong baud"},
		{device.ErrEchoed, "not the ÖKC's port"},
		{device.ErrNoDevice, "device ports"},
	}
	for _, tt := range tests {
		if got := probeError("COM3", 115200, tt.err).Error(); !strings.Contains(got, tt.want) {
			t.Errorf("%v → %q, want %q in it", tt.err, got, tt.want)
		}
	}
	if got := probeError("/dev/ttyUSB0", 115200, device.ErrPermission).Error(); !strings.Contains(got, "group") && !strings.Contains(got, "administrator") {
		t.Errorf("permission → %q", got)
	}
}

func TestDeviceUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"frobnicate"}, {"probe", "--baud", "0"}, {"probe", "extra"}, {"ports", "extra"}} {
		_, _, err := runDevice(t, args...)
		if code := report(&bytes.Buffer{}, err); code != exitUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, code, err, exitUsage)
		}
	}
	if _, _, err := runDevice(t, "ports", "--json"); err != nil {
		t.Fatal(err)
	}
}
