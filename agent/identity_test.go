package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/device"
)

// testNow is the identities' clock in these tests; a test may move it.
var testNow = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func newTestIdentities(t *testing.T, configSerial string, cached device.Identity) (*identities, *bytes.Buffer, string) {
	t.Helper()
	var logs bytes.Buffer
	path := filepath.Join(t.TempDir(), POSDeviceFile)
	now := testNow
	s := newIdentities(configSerial, "COM3", cached, path, 7*24*time.Hour, slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return now })
	return s, &logs, path
}

// TestIdentityOrder: config, then a POS report younger than
// pos_report_max_age, then a fresh device read, then an older POS report,
// then the cache.
func TestIdentityOrder(t *testing.T) {
	cached := device.Identity{FiscalSerial: "JI20000001", Source: device.SourceCache, Port: "COM3"}
	s, _, _ := newTestIdentities(t, "", cached)
	if got := s.current(); got.FiscalSerial != "JI20000001" || got.Source != device.SourceCache {
		t.Fatalf("cache only: %+v", got)
	}
	if _, err := s.report(localapi.DeviceReport{FiscalSerial: "JI20000002", ECRSerial: "E2"}); err != nil {
		t.Fatal(err)
	}
	if got := s.current(); got.FiscalSerial != "JI20000002" || got.Source != device.SourcePOS || got.ECRSerial != "E2" {
		t.Fatalf("pos over cache: %+v", got)
	}
	if s.deviceRead(device.Identity{FiscalSerial: "JI20000002", Source: device.SourceDevice, Protocol: "crc16-arc"}, nil) {
		t.Fatal("the same identity from another source asked for a registration")
	}
	// A new ECR serial for the same fiscal id changes POS_SERI_NO: register.
	if changed, _ := s.report(localapi.DeviceReport{FiscalSerial: "JI20000002", ECRSerial: "E2"}); changed {
		t.Fatal("the same report again asked for a registration")
	}
	if changed, _ := s.report(localapi.DeviceReport{FiscalSerial: "JI20000002", ECRSerial: "E3"}); !changed {
		t.Fatal("a new ECR serial did not ask for a registration")
	}
	s.report(localapi.DeviceReport{FiscalSerial: "JI20000002", ECRSerial: "E2"})
	if got := s.current(); got.Source != device.SourcePOS || got.ECRSerial != "E2" || !s.posFresh() {
		t.Fatalf("a fresh pos report over the device: %+v", got)
	}
	// The report ages past pos_report_max_age: the device read comes
	// first, completed by the pos report.
	now := testNow.Add(7*24*time.Hour + time.Second)
	s.now = func() time.Time { return now }
	if s.posFresh() {
		t.Fatal("a report older than pos_report_max_age is fresh")
	}
	if got := s.current(); got.Source != device.SourceDevice || got.ECRSerial != "E2" {
		t.Fatalf("device over an older pos report, completed by it: %+v", got)
	}
	// A failed read: the device is no longer fresh; the older pos report is used.
	s.deviceRead(device.Identity{}, errors.New("no answer"))
	if got := s.current(); got.Source != device.SourcePOS {
		t.Fatalf("after a failed read: %+v", got)
	}
	c, _, _ := newTestIdentities(t, "JI20000009", cached)
	c.deviceRead(device.Identity{FiscalSerial: "JI20000009", Source: device.SourceDevice}, nil)
	if got := c.current(); got.Source != device.SourceConfig || got.FiscalSerial != "JI20000009" {
		t.Fatalf("config first: %+v", got)
	}
}

// TestIdentityConflict: disagreeing sources are shown with both values and
// logged once per change.
func TestIdentityConflict(t *testing.T) {
	s, logs, _ := newTestIdentities(t, "", device.Identity{})
	if !s.deviceRead(device.Identity{FiscalSerial: "JI20012345", Source: device.SourceDevice}, nil) {
		t.Fatal("the first identity did not ask for a registration")
	}
	changed, err := s.report(localapi.DeviceReport{FiscalSerial: "AV0000017893"})
	if err != nil || !changed {
		t.Fatalf("report: changed %v, %v (a fresh POS report wins over the device)", changed, err)
	}
	v := s.view()
	if !v.Conflict || v.Conflicting["device"] != "JI20012345" || v.Conflicting["pos"] != "AV0000017893" || v.FiscalSerial != "AV0000017893" {
		t.Fatalf("view %+v", v)
	}
	for range 3 {
		s.deviceRead(device.Identity{FiscalSerial: "JI20012345", Source: device.SourceDevice}, nil)
		s.report(localapi.DeviceReport{FiscalSerial: "AV0000017893"})
	}
	if n := strings.Count(logs.String(), "disagree"); n != 1 {
		t.Fatalf("%d warnings:\n%s", n, logs)
	}
	// A new disagreement (the device swapped) is a new warning; the
	// fresh POS report still wins, so no registration.
	if s.deviceRead(device.Identity{FiscalSerial: "JI20099999", Source: device.SourceDevice}, nil) {
		t.Fatal("a device read asked for a registration while a fresh POS report wins")
	}
	if n := strings.Count(logs.String(), "disagree"); n != 2 {
		t.Fatalf("%d warnings after a change:\n%s", n, logs)
	}
	s.report(localapi.DeviceReport{FiscalSerial: "JI20099999"})
	if v := s.view(); v.Conflict || !strings.Contains(logs.String(), "agree again") {
		t.Fatalf("agreement not seen: %+v", v)
	}
}

// TestReportedSerialIsNormalised: a POS that sends the fiscal id in lower
// case or with spaces around it reports the same device; a value that is
// not a fiscal id is still refused, naming the field.
func TestReportedSerialIsNormalised(t *testing.T) {
	s, _, _ := newTestIdentities(t, "", device.Identity{})
	if _, err := s.report(localapi.DeviceReport{FiscalSerial: " ji20012345\t"}); err != nil {
		t.Fatalf("report: %v", err)
	}
	if got := s.current(); got.FiscalSerial != "JI20012345" || got.Source != device.SourcePOS {
		t.Fatalf("current %+v, want JI20012345 from the POS", got)
	}
	var fe *records.FieldError
	if _, err := s.report(localapi.DeviceReport{FiscalSerial: "kasa-1"}); !errors.As(err, &fe) || fe.Field != "fiscal_serial" {
		t.Fatalf("a value that is not a fiscal id: %v", err)
	}
}

// TestIdentityView: every source is listed with its value and age.
func TestIdentityView(t *testing.T) {
	read := time.Date(2026, 11, 27, 9, 59, 0, 0, time.UTC)
	s, _, _ := newTestIdentities(t, "JI20012345", device.Identity{FiscalSerial: "JI20012345", Source: device.SourceCache, ReadAt: read.Add(-time.Hour)})
	s.deviceRead(device.Identity{}, errors.New("read device: port busy"))
	v := s.view()
	if len(v.Sources) != 4 {
		t.Fatalf("sources %+v", v.Sources)
	}
	for _, name := range []string{"config", "device", "pos", "cache"} {
		if _, ok := v.Sources[name]; !ok {
			t.Fatalf("source %s missing: %+v", name, v.Sources)
		}
	}
	if v.Sources["device"].Error != "read device: port busy" || v.Error == "" {
		t.Fatalf("device error not shown: %+v", v)
	}
	if a := v.Sources["cache"].AgeS; a == nil || *a != 3660 {
		t.Fatalf("cache age %v", a)
	}
	if v.Source != "config" || v.Port != "COM3" {
		t.Fatalf("view %+v", v)
	}
}

// TestPOSReportKept: the report survives a restart; a bad shape is a field
// error and keeps nothing; a damaged file is ignored.
func TestPOSReportKept(t *testing.T) {
	s, _, path := newTestIdentities(t, "", device.Identity{})
	_, err := s.report(localapi.DeviceReport{FiscalSerial: "JI2001234"})
	var fe *records.FieldError
	if !errors.As(err, &fe) || fe.Field != "fiscal_serial" {
		t.Fatalf("bad shape: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused report was written: %v", err)
	}
	if _, err := s.report(localapi.DeviceReport{FiscalSerial: "FT40050248", Brand: "HUGIN", Model: "T300", ECRSerial: "FT40050248"}); err != nil {
		t.Fatal(err)
	}
	again := newIdentities("", "none", device.Identity{}, path, 7*24*time.Hour, slog.New(slog.DiscardHandler), time.Now)
	if got := again.current(); got.FiscalSerial != "FT40050248" || got.Source != device.SourcePOS || got.Model != "T300" {
		t.Fatalf("after a restart: %+v", got)
	}
	for _, bad := range []string{"{", `{"fiscal_serial": "nope"}`, strings.Repeat(" ", 20<<10)} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := newIdentities("", "none", device.Identity{}, path, 7*24*time.Hour, slog.New(slog.DiscardHandler), time.Now).current(); got.FiscalSerial != "" {
			t.Fatalf("damaged file %.10q gave %+v", bad, got)
		}
	}
}

func TestLastTraceBounded(t *testing.T) {
	var tr lastTrace
	line := bytes.Repeat([]byte("0.000001 rx 00\n"), 1000)
	for range 100 {
		if n, err := tr.Write(line); n != len(line) || err != nil {
			t.Fatalf("write: %d, %v", n, err)
		}
	}
	b := tr.bytes()
	if len(b) > maxTrace+100 || !bytes.Contains(b, []byte("more bytes of trace dropped")) {
		t.Fatalf("%d bytes, tail %q", len(b), b[len(b)-60:])
	}
	tr.reset()
	if len(tr.bytes()) != 0 {
		t.Fatal("reset kept bytes")
	}
}

// TestPOSReportPort: the report may name the port the POS talks to its
// ÖKC on, checked like device.port ("auto" or a path outside /dev is a
// field error), kept with the report across a restart, and shown with
// the report's age. A repeat of the same report is not written to disk
// again within posRewrite (a POS may report at every sale).
func TestPOSReportPort(t *testing.T) {
	s, _, path := newTestIdentities(t, "", device.Identity{})
	for _, bad := range []string{"auto", "none", "/etc/passwd", "COM0", "tcp://host"} {
		_, err := s.report(localapi.DeviceReport{FiscalSerial: "JI20012345", Port: bad})
		var fe *records.FieldError
		if !errors.As(err, &fe) || fe.Field != "port" {
			t.Errorf("port %q: %v, want a field error on port", bad, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused report was written: %v", err)
	}
	if _, err := s.report(localapi.DeviceReport{FiscalSerial: "JI20012345", Port: "COM7"}); err != nil {
		t.Fatal(err)
	}
	if s.posPort() != "COM7" {
		t.Fatalf("port %q", s.posPort())
	}
	v := s.view()
	if p := v.Sources["pos"]; p.Port != "COM7" || p.AgeS == nil || !p.Fresh || v.NotOpened == "" || v.Port != "COM7" {
		t.Fatalf("view %+v, pos %+v", v, v.Sources["pos"])
	}
	again := newIdentities("", "auto", device.Identity{}, path, 7*24*time.Hour, slog.New(slog.DiscardHandler), func() time.Time { return testNow })
	if again.posPort() != "COM7" || !again.posFresh() {
		t.Fatalf("after a restart: port %q fresh %v", again.posPort(), again.posFresh())
	}
	// The same report 30 s later: kept in memory, not rewritten; a
	// minute later: rewritten (its age on disk stays within a minute).
	readAt := func() time.Time {
		id, err := readPOSReport(path)
		if err != nil {
			t.Fatal(err)
		}
		return id.ReadAt
	}
	first := readAt()
	now := testNow.Add(30 * time.Second)
	s.now = func() time.Time { return now }
	s.report(localapi.DeviceReport{FiscalSerial: "JI20012345", Port: "COM7"})
	if got := readAt(); !got.Equal(first) {
		t.Fatalf("an unchanged report was rewritten after 30 s (%v → %v)", first, got)
	}
	if age := *s.view().Sources["pos"].AgeS; age != 0 {
		t.Fatalf("in-memory age %d s, want 0", age)
	}
	now = testNow.Add(90 * time.Second)
	s.report(localapi.DeviceReport{FiscalSerial: "JI20012345", Port: "COM7"})
	if got := readAt(); !got.Equal(now) {
		t.Fatalf("kept copy not refreshed after a minute: %v", got)
	}
}
