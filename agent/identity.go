package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/gmp3"
	"github.com/tposagent/tposagent/internal/atomicfile"
)

// POSDeviceFile, in the data dir, keeps the identity the POS reported
// (PUT /v1/device) across restarts.
const POSDeviceFile = "pos-device.json"

// identities holds every source of the fiscal identity and picks the one
// registration uses: the configured override, a POS report younger than
// posMaxAge, a fresh device read, an older POS report, the cached last
// device read — in that order. While the POS's report is fresh the device
// is not opened at all (posFresh). When sources name different fiscal
// serials it says so (status "conflict") and logs a warning once per
// change, never choosing silently. Safe for concurrent use.
type identities struct {
	log       *slog.Logger
	now       func() time.Time
	posPath   string
	port      string
	posMaxAge time.Duration

	mu        sync.Mutex
	config    device.Identity // device.fiscal_serial; zero when not set
	device    device.Identity // the last good read of this run
	deviceOK  bool            // the last read succeeded (device is fresh)
	deviceErr string
	errSince  time.Time // the first failed read since the last good one
	cache     device.Identity
	pos       device.Identity
	posSaved  time.Time // when the POS report was last written to posPath
	chosen    string    // fiscal serial last chosen
	chosenECR string    // and its ECR serial (POS_SERI_NO when the config has none)
	conflict  string    // the disagreement last logged, "" when none
}

func newIdentities(configSerial, port string, cached device.Identity, posPath string, posMaxAge time.Duration, log *slog.Logger, now func() time.Time) *identities {
	s := &identities{log: log, now: now, posPath: posPath, port: port, cache: cached, posMaxAge: posMaxAge}
	if configSerial = strings.TrimSpace(configSerial); configSerial != "" {
		if !gmp3.ValidFiscalID(configSerial) {
			log.Warn("device.fiscal_serial does not have the shape of a fiscal id (2 letters and 8 or 10 digits); it is used for registration but not sent to the device", "fiscal_serial", configSerial)
		}
		s.config = device.Identity{FiscalSerial: configSerial, Source: device.SourceConfig}
	}
	if pos, err := readPOSReport(posPath); err == nil {
		s.pos, s.posSaved = pos, pos.ReadAt
	} else if !errors.Is(err, fs.ErrNotExist) {
		log.Warn("ignoring the kept POS device report", "err", err)
	}
	s.mu.Lock()
	s.update()
	s.mu.Unlock()
	return s
}

// known is the best fiscal id already known, for the request header: the
// config, the POS report, the cache, the last device read.
func (s *identities) known() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range []device.Identity{s.config, s.pos, s.cache, s.device} {
		if gmp3.ValidFiscalID(id.FiscalSerial) {
			return id.FiscalSerial
		}
	}
	return ""
}

// deviceRead records the outcome of a device read; true when the chosen
// fiscal serial (or its ECR serial) changed: time to register again.
func (s *identities) deviceRead(id device.Identity, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.deviceErr == "" {
			s.errSince = s.now()
		}
		s.deviceOK, s.deviceErr = false, err.Error()
	} else {
		s.device, s.deviceOK, s.deviceErr, s.errSince = id, true, "", time.Time{}
		s.cache = id
		s.cache.Source = device.SourceCache
	}
	return s.update()
}

// posRewrite is how old the kept copy of an unchanged POS report may get
// before a repeat of it is written again (its age on disk after a
// restart is then at most this much too high; a POS that reports at
// every sale does not make a disk write of each).
const posRewrite = time.Minute

// report keeps the POS's report durably; true when the chosen fiscal
// serial (or its ECR serial) changed. A fiscal serial without the shape of
// one, or a port that is none, is a *records.FieldError.
func (s *identities) report(r localapi.DeviceReport) (bool, error) {
	// A POS may send the id as its user typed it: " ji20012345".
	r.FiscalSerial = strings.ToUpper(strings.TrimSpace(r.FiscalSerial))
	if !gmp3.ValidFiscalID(r.FiscalSerial) {
		return false, &records.FieldError{Field: "fiscal_serial", Msg: fmt.Sprintf("%q is not a fiscal id: 2 letters and 8 digits (JI20012345) or 10 digits (AV0000017893)", r.FiscalSerial)}
	}
	if r.Port = strings.TrimSpace(r.Port); r.Port != "" {
		if err := device.CheckPort(r.Port); err != nil {
			return false, &records.FieldError{Field: "port", Msg: err.Error()}
		}
	}
	now := s.now()
	id := device.Identity{FiscalSerial: r.FiscalSerial, Brand: r.Brand, Model: r.Model, ECRSerial: r.ECRSerial, Port: r.Port, Source: device.SourcePOS, ReadAt: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	same := sameReport(s.pos, id)
	if !same || now.Sub(s.posSaved) >= posRewrite || now.Before(s.posSaved) {
		if err := writePOSReport(s.posPath, id); err != nil {
			return false, err
		}
		s.posSaved = now
	}
	s.pos = id
	if !same {
		s.log.Info("the POS reported the device identity", "fiscal_serial", id.FiscalSerial, "brand", id.Brand, "model", id.Model, "ecr_serial", id.ECRSerial, "port", id.Port)
	}
	return s.update(), nil
}

func sameReport(a, b device.Identity) bool {
	return a.FiscalSerial == b.FiscalSerial && a.Brand == b.Brand && a.Model == b.Model && a.ECRSerial == b.ECRSerial && a.Port == b.Port
}

// posFresh reports whether the POS's report is younger than posMaxAge:
// then the device is not opened at all.
func (s *identities) posFresh() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.freshPOS().FiscalSerial != ""
}

// posPort is the port the POS reported (its report of any age), "" when
// none: auto asks it instead of scanning.
func (s *identities) posPort() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos.Port
}

// freshPOS is the POS report while it is younger than posMaxAge; s.mu held.
func (s *identities) freshPOS() device.Identity {
	if s.pos.FiscalSerial == "" || s.posMaxAge <= 0 {
		return device.Identity{}
	}
	if age := s.pos.Age(s.now()); age < 0 || age >= s.posMaxAge {
		return device.Identity{}
	}
	return s.pos
}

// candidates are the sources in order of preference, with a value.
func (s *identities) candidates() []device.Identity {
	var out []device.Identity
	for _, id := range []device.Identity{s.config, s.freshPOS(), s.freshDevice(), s.pos, s.cache} {
		if id.FiscalSerial != "" {
			out = append(out, id)
		}
	}
	return out
}

func (s *identities) freshDevice() device.Identity {
	if s.deviceOK {
		return s.device
	}
	return device.Identity{}
}

// current is the identity registration uses: the first source with a
// value, completed with the brand, model and ECR serial of the POS report
// when that names the same device.
func (s *identities) current() device.Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pick()
}

func (s *identities) pick() device.Identity {
	c := s.candidates()
	if len(c) == 0 {
		return device.Identity{}
	}
	id := c[0]
	if s.pos.FiscalSerial == id.FiscalSerial {
		id.Brand, id.Model, id.ECRSerial = first(id.Brand, s.pos.Brand), first(id.Model, s.pos.Model), first(id.ECRSerial, s.pos.ECRSerial)
	}
	return id
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// disagreement maps each source to its fiscal serial when the config, the
// device (fresh, else its cache) and the POS do not all agree; nil when
// they do.
func (s *identities) disagreement() map[string]string {
	m := map[string]string{}
	dev := s.freshDevice()
	if dev.FiscalSerial == "" {
		dev = s.cache
	}
	for _, id := range []device.Identity{s.config, dev, s.pos} {
		if id.FiscalSerial != "" {
			m[string(id.Source)] = id.FiscalSerial
		}
	}
	distinct := map[string]bool{}
	for _, v := range m {
		distinct[v] = true
	}
	if len(distinct) < 2 {
		return nil
	}
	return m
}

// update recomputes the choice and logs a new disagreement once; s.mu held.
func (s *identities) update() bool {
	key := ""
	if d := s.disagreement(); d != nil {
		var parts []string
		for k, v := range d {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		key = strings.Join(parts, " ")
	}
	if key != s.conflict {
		if key != "" {
			s.log.Warn("the sources of the fiscal identity disagree; registration uses the first of config, a fresh POS report, device, an older POS report, cache", "values", key, "using", s.pick().Source)
		} else {
			s.log.Info("the sources of the fiscal identity agree again", "fiscal_serial", s.pick().FiscalSerial)
		}
		s.conflict = key
	}
	id := s.pick()
	changed := s.chosen != "" && id.FiscalSerial != s.chosen
	if changed {
		s.log.Warn("fiscal serial changed; registering again", "old", s.chosen, "new", id.FiscalSerial, "source", id.Source)
	}
	if id.FiscalSerial != "" {
		changed = changed || s.chosen == "" || id.ECRSerial != s.chosenECR
		s.chosen, s.chosenECR = id.FiscalSerial, id.ECRSerial
	}
	return changed
}

// view is the identity and its sources for the local API.
func (s *identities) view() localapi.Device {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	id := s.pick()
	v := localapi.Device{
		FiscalSerial: id.FiscalSerial, Source: string(id.Source), Port: first(id.Port, s.port), Protocol: id.Protocol,
		ReadAt: timePtr(id.ReadAt), ECRSerial: id.ECRSerial, Brand: id.Brand, Model: id.Model, Error: s.deviceErr,
		StuckCalls: device.Stuck(),
	}
	if s.deviceErr != "" {
		v.ErrorSince = timePtr(s.errSince)
	}
	if v.Source == "" {
		v.Source = "none"
	}
	if d := s.disagreement(); d != nil {
		v.Conflict, v.Conflicting = true, d
	}
	dev := s.freshDevice()
	src := func(id device.Identity, errText string) localapi.DeviceSource {
		ds := localapi.DeviceSource{
			FiscalSerial: id.FiscalSerial, ECRSerial: id.ECRSerial, Brand: id.Brand, Model: id.Model,
			Port: id.Port, Protocol: id.Protocol, At: timePtr(id.ReadAt), Error: errText,
		}
		if !id.ReadAt.IsZero() && id.FiscalSerial != "" {
			age := int64(id.Age(now) / time.Second)
			ds.AgeS = &age
		}
		return ds
	}
	pos := src(s.pos, "")
	pos.Fresh = s.freshPOS().FiscalSerial != ""
	v.Sources = map[string]localapi.DeviceSource{
		string(device.SourceConfig): src(s.config, ""),
		string(device.SourceDevice): src(dev, s.deviceErr),
		string(device.SourcePOS):    pos,
		string(device.SourceCache):  src(s.cache, ""),
	}
	if pos.Fresh {
		v.NotOpened = fmt.Sprintf("the POS's report is younger than %s: the agent does not open the device", fmtAge(s.posMaxAge))
	}
	return v
}

// fmtAge writes d in whole days when it is some ("7d"), else as a Duration.
func fmtAge(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// KnownFiscalSerial is the best fiscal id that dataDir holds without
// reading the device, in the agent's order after the config: the POS's
// report, else the last good device read. from names the source; both
// are "" when there is none. `device probe` puts it in its request header
// as the agent does (some devices answer only to their own id).
func KnownFiscalSerial(dataDir string) (serial, from string) {
	if id, err := readPOSReport(filepath.Join(dataDir, POSDeviceFile)); err == nil {
		return id.FiscalSerial, "the POS report"
	}
	if id := device.CachedIdentity(dataDir); id.FiscalSerial != "" {
		return id.FiscalSerial, "the last good read"
	}
	return "", ""
}

// POSReport is the POS's last report kept in dataDir (PUT /v1/device),
// with the port it named and when it came; an error wrapping
// fs.ErrNotExist when there is none.
func POSReport(dataDir string) (device.Identity, error) {
	return readPOSReport(filepath.Join(dataDir, POSDeviceFile))
}

// maxPOSReport bounds what is read back from the POS report file.
const maxPOSReport = 16 << 10

func readPOSReport(path string) (device.Identity, error) {
	f, err := atomicfile.Open(path)
	if err != nil {
		return device.Identity{}, fmt.Errorf("read POS device report: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPOSReport+1))
	if err != nil {
		return device.Identity{}, fmt.Errorf("read POS device report %s: %w", path, err)
	}
	if len(b) > maxPOSReport {
		return device.Identity{}, fmt.Errorf("read POS device report %s: larger than %d bytes", path, maxPOSReport)
	}
	var id device.Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return device.Identity{}, fmt.Errorf("read POS device report %s: %w", path, err)
	}
	if !gmp3.ValidFiscalID(id.FiscalSerial) {
		return device.Identity{}, fmt.Errorf("read POS device report %s: fiscal serial %q is not a fiscal id", path, id.FiscalSerial)
	}
	id.Source = device.SourcePOS
	return id, nil
}

func writePOSReport(path string, id device.Identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("keep POS device report: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("keep POS device report: %w", err)
	}
	return nil
}
