package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/till"
)

func runDevice(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	err = run(context.Background(), e, append([]string{"device"}, args...))
	return out.String(), errb.String(), err
}

func TestDeviceProbeCommand(t *testing.T) {
	sim, err := devicetest.StartAny(devicetest.Options{FiscalSerial: "JI20012345", Fault: devicetest.FaultStrict})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()

	// A strict device answers only to its own id in the header.
	_, _, err = runDevice(t, "probe", "--port", sim.Port(), "--ack-timeout", "300ms")
	if err == nil || !strings.Contains(err.Error(), "--fiscal-serial") {
		t.Fatalf("strict device without an id: %v", err)
	}
	trace := filepath.Join(t.TempDir(), "okc.trace")
	out, errOut, err := runDevice(t, "probe", "--port", sim.Port(), "--fiscal-serial", "JI20012345", "--trace", trace)
	if err != nil {
		t.Fatal(err)
	}
	if first := strings.SplitN(out, "\n", 2)[0]; first != "JI20012345" {
		t.Fatalf("stdout %q", out)
	}
	if !strings.Contains(errOut, sim.Port()) || !strings.Contains(errOut, "crc16-arc") || !strings.Contains(errOut, trace) {
		t.Fatalf("stderr %q", errOut)
	}
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	events, comments, err := device.ReadTrace(f)
	f.Close()
	if err != nil || len(events) < 3 || !strings.HasPrefix(comments[0], "tposagent ") {
		t.Fatalf("trace: %d events, comments %q, %v", len(events), comments, err)
	}

	out, _, err = runDevice(t, "probe", "--port", sim.Port(), "--fiscal-serial", "JI20012345", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var id device.Identity
	if err := json.Unmarshal([]byte(out), &id); err != nil || id.FiscalSerial != "JI20012345" || id.Source != device.SourceDevice || id.Protocol != "crc16-arc" {
		t.Fatalf("json %q: %+v %v", out, id, err)
	}

	sim.SetFault(devicetest.FaultSilent)
	out, _, err = runDevice(t, "probe", "--port", sim.Port(), "--ack-timeout", "100ms", "--tries", "1", "--protocol", "crc16-arc")
	if err == nil || out != "" || !strings.Contains(err.Error(), "check the cable") || report(&bytes.Buffer{}, err) != exitError {
		t.Fatalf("silent: out %q err %v", out, err)
	}
	if strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("error is not one line: %q", err)
	}
}

// TestDeviceProbeUsesTheKnownID: without --fiscal-serial or a configured
// one, probe puts the id the agent's data dir knows (the POS's report,
// then the last good read) in the header, as the agent does, so a strict
// device answers; and it writes nothing into the data dir.
func TestDeviceProbeUsesTheKnownID(t *testing.T) {
	sim, err := devicetest.StartAny(devicetest.Options{FiscalSerial: "JI20012345", Fault: devicetest.FaultStrict})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	dir := t.TempDir()
	c := till.Config("data", till.Servers{Token: e2eToken})
	c.Device.Port, c.Device.FiscalSerial = "none", ""
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, config.Encode(&c), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	report := `{"fiscal_serial":"JI20012345","source":"pos"}`
	if err := os.WriteFile(filepath.Join(data, agent.POSDeviceFile), []byte(report), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runDevice(t, "probe", "--config", cfgPath, "--port", sim.Port(), "--ack-timeout", "300ms")
	if err != nil {
		t.Fatalf("probe with the POS's id known: %v\n%s", err, errOut)
	}
	if strings.TrimSpace(out) != "JI20012345" || !strings.Contains(errOut, "header id JI20012345 (from the POS report") {
		t.Fatalf("stdout %q stderr %q", out, errOut)
	}
	if ents, _ := os.ReadDir(data); len(ents) != 1 {
		t.Errorf("probe wrote into the agent's data dir: %d entries", len(ents))
	}
}

func TestDeviceProbeErrorsAreActionable(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{device.ErrBusy, "another program (most likely the POS) holds the port"},
		{device.ErrBadFrame, "wrong port or wrong baud"},
		{device.ErrEchoed, "not the ÖKC's port"},
		{device.ErrNoDevice, "device ports"},
		{device.ErrNAK, "--protocol"},
		{device.ErrUnregistered, "--fiscal-serial"},
		{device.ErrDeviceBusy, "busy"},
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
	for _, args := range [][]string{nil, {"frobnicate"}, {"probe", "--baud", "0"}, {"probe", "extra"}, {"ports", "extra"},
		{"probe", "--protocol", "crc32"}, {"set"}, {"set", "extra"}} {
		_, _, err := runDevice(t, args...)
		if code := report(&bytes.Buffer{}, err); code != exitUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, code, err, exitUsage)
		}
	}
	if _, _, err := runDevice(t, "ports", "--json"); err != nil {
		t.Fatal(err)
	}
}
