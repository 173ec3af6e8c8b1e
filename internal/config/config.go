// Package config reads, validates and writes the agent's TOML configuration
// file (README, "Configuration").
//
// The file is decoded strictly: an unknown key is an error naming the key
// and its line, so that a typo never silently disables a feature. A UTF-8
// byte-order mark (Notepad adds one) is ignored. Every secret can come from
// the environment instead of the file (see EnvOverrides). Relative paths are
// resolved against the directory of the config file, never the working
// directory: a Windows service starts in System32.
//
// Load distinguishes "no config file" (ErrNotFound) from "a config file that
// is wrong" (*Error, with the line when the parser knows it).
//
// It is read by the agent, the CLI and the installer, and imports none of
// them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"
)

// Config is the whole file. The TOML keys are a contract (README, "Configuration").
type Config struct {
	DataDir string `toml:"data_dir"`
	Store   Store  `toml:"store"`
	TPOSL   TPOSL  `toml:"tposl"`
	Oduyo   Oduyo  `toml:"oduyo"`
	Device  Device `toml:"device"`
	API     API    `toml:"api"`
	Outbox  Outbox `toml:"outbox"`
	Log     Log    `toml:"log"`

	// Path is the file this config was read from ("" for Default()).
	Path string `toml:"-"`

	// NoFloors lowers the floors of Bounds, for tests only (see
	// NoFloorsEnv, which sets it).
	NoFloors bool `toml:"-"`

	unitless []string // size keys the file gave as a bare number
}

// Store is the static till profile that fills ParamsTPOSKasaBilgisi.
type Store struct {
	TaxNumber    string `toml:"tax_number"`    // VERGI_NUMARASI (0..35)
	TaxOffice    string `toml:"tax_office"`    // VERGI_DAIRESI (0..50)
	CompanyName  string `toml:"company_name"`  // FIRMA_ADI (0..200)
	PosNo        int    `toml:"pos_no"`        // POS_NO
	PosType      int    `toml:"pos_type"`      // POS_TIPI
	POSSerial    string `toml:"pos_serial"`    // POS_SERI_NO; default: the device's ECR serial
	ReceiptLimit string `toml:"receipt_limit"` // FIS_LIMITI

	EInvoiceActive            int    `toml:"einvoice_active"`              // E_FAT_AKTIF
	EInvoicePrefix            string `toml:"einvoice_prefix"`              // E_FAT_NO_BAS_KOD (0..15)
	EArchiveActive            int    `toml:"earchive_active"`              // E_ARV_AKTIF
	EArchivePrefix            string `toml:"earchive_prefix"`              // E_ARV_NO_BAS_KOD (0..15)
	EArchiveNameRequiredLimit string `toml:"earchive_name_required_limit"` // E_ARV_MUSTERI_AD_ZORUNLU_LIMIT
	EArchiveEmailRequired     int    `toml:"earchive_email_required"`      // E_ARV_EMAIL_ZORUNLU

	PeriodYear     int    `toml:"period_year"`      // DONEM_YILI; 0 = the current year
	BackupDir      string `toml:"backup_dir"`       // newest file's mtime → SON_YEDEK_ZAMANI
	TPOSDir        string `toml:"tpos_dir"`         // TPOS install dir, for its version file
	TPOSVersion    string `toml:"tpos_version"`     // TPOS_VERSIYON; overrides the version file
	TPOSVersionSeq string `toml:"tpos_version_seq"` // TPOS_VERSIYON_SIRA
}

// TPOSL is the licence server.
type TPOSL struct {
	URL      string   `toml:"url"`      // full endpoint URL
	Username string   `toml:"username"` // WebErisimKullanici
	Password Secret   `toml:"password"` // WebErisimSifre
	Interval Duration `toml:"interval"` // re-registration period
	Timeout  Duration `toml:"timeout"`
	Grace    Duration `toml:"grace"`   // a cached licence older than this decays to unknown
	CAFile   string   `toml:"ca_file"` // extra CA for a private server (added to the system pool)
}

// Oduyo is the ERP API.
type Oduyo struct {
	BaseURL  string   `toml:"base_url"`
	APIKey   Secret   `toml:"api_key"`
	Username string   `toml:"username"`
	Password Secret   `toml:"password"`
	Timeout  Duration `toml:"timeout"`
	CAFile   string   `toml:"ca_file"`
}

// Device is the fiscal cash register on a serial port or the network.
type Device struct {
	Port         string   `toml:"port"`     // "auto", "none", a port name (COM3, /dev/ttyUSB0) or "tcp://host:port"
	Protocol     string   `toml:"protocol"` // "auto", "crc16-arc", "crc16-ccitt", "t300"
	Baud         int      `toml:"baud"`
	FiscalSerial string   `toml:"fiscal_serial"` // manual override / fallback
	Exclude      []string `toml:"exclude"`       // ports auto-detection never probes
	AckTimeout   Duration `toml:"ack_timeout"`   // wait for ACK (and then the answer), per try
	Tries        int      `toml:"tries"`         // sends per dialect
	ProbeBudget  Duration `toml:"probe_budget"`  // a whole read, all dialects and ports
	HoldMax      Duration `toml:"hold_max"`      // one open of the port lasts at most this
	ReopenGap    Duration `toml:"reopen_gap"`    // at least this between two opens of one port
	Scan         string   `toml:"scan"`          // which ports "auto" may scan: "usb" or "all"
	// POSReportMaxAge: while the POS's report (PUT /v1/device) is younger,
	// the agent does not open the device at all.
	POSReportMaxAge Duration `toml:"pos_report_max_age"`
	// Timeout is the key of earlier versions (answer timeout per try); it
	// is read as ack_timeout when that is not set, with a warning.
	Timeout Duration `toml:"timeout"`
}

// Device protocols.
var deviceProtocols = []string{"auto", "crc16-arc", "crc16-ccitt", "t300"}

// API is the local HTTP API for the POS application.
type API struct {
	Listen string `toml:"listen"`
	Token  Secret `toml:"token"`
	// AllowedHosts are more names (or addresses) the local API answers to
	// in the Host header, e.g. a name the POS uses for a widened listen;
	// the loopback names, and for a widened listen the machine's names
	// and addresses, need no entry. Without a port.
	AllowedHosts []string `toml:"allowed_hosts"`
}

// MaxAllowedHosts bounds api.allowed_hosts.
const MaxAllowedHosts = 64

// checkAllowedHost returns why h cannot be an api.allowed_hosts entry
// ("" when it can): an IP address (IPv6 with or without brackets) or a
// DNS/NetBIOS name, without scheme, port, path or wildcard.
func checkAllowedHost(h string) string {
	if h != strings.TrimSpace(h) || h == "" {
		return "must not be empty or have spaces around it"
	}
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
		return ""
	}
	if len(h) > 253 {
		return "is longer than 253 characters"
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return "must be a host name (labels of 1 to 63 characters) or an IP address, without scheme, port or path"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "has a label that starts or ends with '-'"
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Sprintf("must be a host name or an IP address, without scheme, port, path or wildcard (found %q)", r)
			}
		}
	}
	return ""
}

// Outbox is the durable queue.
type Outbox struct {
	MaxSize         Size     `toml:"max_size"`
	RetryMax        Duration `toml:"retry_max"`
	RetryAfterMax   Duration `toml:"retry_after_max"` // cap of a server's Retry-After pause
	ReconnectJitter Duration `toml:"reconnect_jitter"`
	Concurrency     int      `toml:"concurrency"`
}

// Log is the agent's log output.
type Log struct {
	Level      string `toml:"level"`       // debug, info, warn, error
	File       string `toml:"file"`        // default <data_dir>/tposagent.log; "-" for none
	MaxSize    Size   `toml:"max_size"`    // rotate beyond this
	MaxBackups int    `toml:"max_backups"` // rotated files kept
}

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		DataDir: DefaultDataDir(),
		Store:   Store{PosNo: 1, PosType: 1},
		TPOSL: TPOSL{
			Interval: Duration{6 * time.Hour},
			Timeout:  Duration{30 * time.Second},
			Grace:    Duration{7 * 24 * time.Hour},
		},
		Oduyo: Oduyo{Timeout: Duration{20 * time.Second}},
		Device: Device{Port: "auto", Protocol: "auto", Baud: 115200, AckTimeout: Duration{1500 * time.Millisecond},
			Tries: 3, ProbeBudget: Duration{45 * time.Second}, HoldMax: Duration{2 * time.Second},
			ReopenGap: Duration{5 * time.Second}, Scan: "usb", POSReportMaxAge: Duration{7 * 24 * time.Hour}},
		API: API{Listen: "127.0.0.1:8787"},
		Outbox: Outbox{
			MaxSize:         256 << 20,
			RetryMax:        Duration{5 * time.Minute},
			RetryAfterMax:   Duration{time.Hour},
			ReconnectJitter: Duration{30 * time.Second},
			Concurrency:     4,
		},
		Log: Log{Level: "info", MaxSize: 10 << 20, MaxBackups: 3},
	}
}

// ErrNotFound is returned (wrapped) by Load when there is no config file.
var ErrNotFound = errors.New("no config file")

// Error is a config file that cannot be used: it names the file, and the
// key and line when known.
type Error struct {
	Path string
	Line int    // 0 when unknown
	Key  string // dotted key, "" when not about one key
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config ")
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads the file at path (DefaultPath() when empty), applies the
// environment overrides, resolves relative paths and validates.
func Load(path string) (*Config, error) {
	c, err := Read(path)
	if err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Read is Load without Validate, for clients of a running agent that need
// only a few keys (the API address and token).
func Read(path string) (*Config, error) {
	if path == "" {
		path = DefaultPath()
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		path = abs
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	c.ApplyEnv(os.LookupEnv)
	c.Resolve()
	return c, nil
}

// MaxFileSize is the largest config file read. A real one is a few KiB;
// anything bigger is refused before it is read whole.
const MaxFileSize = 1 << 20

// ReadFile reads the config file at path as Read does, without parsing
// it: the same checks (a regular file or a symlink to one, at most
// MaxFileSize), for a command that needs the raw bytes (bugreport, the
// service commands, uninstall). A missing file is ErrNotFound.
func ReadFile(path string) ([]byte, error) { return readFile(path) }

// readFile reads at most MaxFileSize bytes of the file at path.
//
// The path must be a regular file or a symlink to one: a FIFO would block
// the open (and the agent, deaf to a stop) until a writer comes, a device
// would never end. It is checked before the open, and the open itself does
// not wait for a FIFO's writer where the platform allows (openFlags).
func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: run 'tposagent install' to create one, or pass --config FILE", ErrNotFound, path)
	}
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	if err := regular(st); err != nil {
		return nil, &Error{Path: path, Msg: err.Error()}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	defer f.Close()
	tooBig := &Error{Path: path, Msg: fmt.Sprintf("larger than %s: not a tposagent config file (is --config the right file?)", Size(MaxFileSize))}
	st, err = f.Stat()
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	if err := regular(st); err != nil { // replaced between the two looks
		return nil, &Error{Path: path, Msg: err.Error()}
	}
	if st.Size() > MaxFileSize {
		return nil, tooBig
	}
	// The size may change under us, or the path may not be a regular file:
	// the limit holds for what is read, too.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))}
	}
	if len(data) > MaxFileSize {
		return nil, tooBig
	}
	return data, nil
}

// regular says what st is when it is not a regular file.
func regular(st fs.FileInfo) error {
	m := st.Mode()
	if m.IsRegular() {
		return nil
	}
	what := "not a regular file"
	switch {
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeDevice != 0:
		what = "a device"
	}
	return fmt.Errorf("is %s, not a regular file: the config must be a file (or a symlink to one)", what)
}

// unwrapPath drops the *fs.PathError wrapper (the path is already named).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse decodes data strictly over Default(). path is used in messages and
// kept in Config.Path; relative paths are not resolved yet.
func Parse(data []byte, path string) (*Config, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		return nil, &Error{Path: path, Msg: "not valid UTF-8 (save the file as UTF-8)"}
	}
	c := Default()
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(path, err)
	}
	if c.Device.Timeout.Duration > 0 && c.Device.AckTimeout == Default().Device.AckTimeout {
		c.Device.AckTimeout = c.Device.Timeout // the earlier key, see Warnings
	}
	c.Path = path
	c.unitless = findUnitless(data)
	return &c, nil
}

func decodeError(path string, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		d := strict.Errors[0]
		line, _ := d.Position()
		msg := "unknown key (check its spelling; see README's config reference)"
		if n := len(strict.Errors); n > 1 {
			msg += fmt.Sprintf("; %d unknown keys in all", n)
		}
		return &Error{Path: path, Line: line, Key: strings.Join(d.Key(), "."), Msg: msg}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, _ := de.Position()
		return &Error{Path: path, Line: line, Key: strings.Join(de.Key(), "."), Msg: de.Error()}
	}
	// Errors from our own UnmarshalText (durations, sizes) arrive here.
	return &Error{Path: path, Msg: err.Error()}
}

// EnvOverrides lists the environment variables that override keys. Every
// secret has one, so that a fleet roll-out need not write it into a file.
var EnvOverrides = []struct {
	Name string
	Key  string
	set  func(c *Config, v string)
}{
	{"TPOSAGENT_TPOSL_URL", "tposl.url", func(c *Config, v string) { c.TPOSL.URL = v }},
	{"TPOSAGENT_TPOSL_USERNAME", "tposl.username", func(c *Config, v string) { c.TPOSL.Username = v }},
	{"TPOSAGENT_TPOSL_PASSWORD", "tposl.password", func(c *Config, v string) { c.TPOSL.Password = Secret(v) }},
	{"TPOSAGENT_ODUYO_BASE_URL", "oduyo.base_url", func(c *Config, v string) { c.Oduyo.BaseURL = v }},
	{"TPOSAGENT_ODUYO_API_KEY", "oduyo.api_key", func(c *Config, v string) { c.Oduyo.APIKey = Secret(v) }},
	{"TPOSAGENT_ODUYO_USERNAME", "oduyo.username", func(c *Config, v string) { c.Oduyo.Username = v }},
	{"TPOSAGENT_ODUYO_PASSWORD", "oduyo.password", func(c *Config, v string) { c.Oduyo.Password = Secret(v) }},
	{"TPOSAGENT_API_TOKEN", "api.token", func(c *Config, v string) { c.API.Token = Secret(v) }},
	{"TPOSAGENT_DATA_DIR", "data_dir", func(c *Config, v string) { c.DataDir = v }},
	{"TPOSAGENT_LOG_LEVEL", "log.level", func(c *Config, v string) { c.Log.Level = v }},
}

// Secrets are the values of the config's secret keys (empty ones
// included): text that may show a server's words (status, the CLI, logs)
// replaces them.
func (c *Config) Secrets() []string {
	return []string{c.TPOSL.Password.Reveal(), c.Oduyo.Password.Reveal(), c.Oduyo.APIKey.Reveal(), c.API.Token.Reveal()}
}

// ApplyEnv overrides keys from the environment (non-empty values only).
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) {
	for _, o := range EnvOverrides {
		if v, ok := lookup(o.Name); ok && v != "" {
			o.set(c, v)
		}
	}
	if v, _ := lookup(NoFloorsEnv); v == "1" {
		c.NoFloors = true
	}
}

// Resolve makes relative paths relative to the config file's directory.
func (c *Config) Resolve() {
	if c.Path == "" {
		return
	}
	base := filepath.Dir(c.Path)
	for _, p := range []*string{&c.DataDir, &c.Store.BackupDir, &c.Store.TPOSDir, &c.TPOSL.CAFile, &c.Oduyo.CAFile, &c.Log.File} {
		if *p != "" && *p != "-" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// LogFile is the log file path, "" when file logging is off.
func (c *Config) LogFile() string {
	switch c.Log.File {
	case "-":
		return ""
	case "":
		return filepath.Join(c.DataDir, "tposagent.log")
	}
	return c.Log.File
}

// Validate checks every key and returns the first problem as *Error.
func (c *Config) Validate() error {
	bad := func(key, format string, a ...any) error {
		return &Error{Path: c.Path, Key: key, Msg: fmt.Sprintf(format, a...)}
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	if c.TPOSL.URL != "" {
		if err := checkURL(c.TPOSL.URL); err != nil {
			return bad("tposl.url", "%v", err)
		}
	}
	if err := c.Store.validate(); err != nil {
		return bad(err.key, "%s", err.msg)
	}
	if err := c.checkBounds(); err != nil {
		return err
	}
	if c.TPOSL.Interval.Duration >= c.TPOSL.Grace.Duration {
		return bad("tposl.interval", "must be shorter than tposl.grace (%s): else the licence decays to unknown between two checks", c.TPOSL.Grace)
	}
	if c.Oduyo.BaseURL != "" {
		if err := checkURL(c.Oduyo.BaseURL); err != nil {
			return bad("oduyo.base_url", "%v", err)
		}
	}
	switch port := strings.ToLower(c.Device.Port); {
	case port == "":
		return bad("device.port", `must be "auto", "none", a port name such as COM3 or /dev/ttyUSB0, or tcp://host:port`)
	case strings.HasPrefix(port, "tcp://"):
		if _, p, err := net.SplitHostPort(c.Device.Port[len("tcp://"):]); err != nil || p == "" {
			return bad("device.port", "must be tcp://host:port, e.g. tcp://192.168.1.50:4444 (got %q)", c.Device.Port)
		}
	}
	if !slices.Contains(deviceProtocols, strings.ToLower(c.Device.Protocol)) {
		return bad("device.protocol", "must be one of %s (got %q)", strings.Join(deviceProtocols, ", "), c.Device.Protocol)
	}
	if n := utf16Len(strings.TrimSpace(c.Device.FiscalSerial)); n > maxFiscalSerial {
		return bad("device.fiscal_serial", "%d characters, the licence server accepts at most %d (YK_FISCAL_SERI_NO)", n, maxFiscalSerial)
	}
	if c.Device.Baud <= 0 {
		return bad("device.baud", "must be positive (the ÖKC default is 115200)")
	}
	if c.Device.Tries < 1 || c.Device.Tries > 10 {
		return bad("device.tries", "must be 1..10 (the sources use 3)")
	}
	if s := strings.ToLower(c.Device.Scan); s != "usb" && s != "all" {
		return bad("device.scan", `must be "usb" (USB serial ports only) or "all" (built-in UARTs too) (got %q)`, c.Device.Scan)
	}
	if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
		return bad("api.listen", "must be host:port, e.g. 127.0.0.1:8787 (%v)", err)
	}
	if n := len(c.API.AllowedHosts); n > MaxAllowedHosts {
		return bad("api.allowed_hosts", "has %d entries, at most %d", n, MaxAllowedHosts)
	}
	for i, h := range c.API.AllowedHosts {
		if why := checkAllowedHost(h); why != "" {
			return bad(fmt.Sprintf("api.allowed_hosts[%d]", i), "%q %s", h, why)
		}
	}
	if strings.TrimSpace(c.API.Token.Reveal()) == "" {
		return bad("api.token", "is required and must not be blank: every call of the local API needs it (run 'tposagent install' to generate one)")
	}
	if c.Outbox.Concurrency < 1 || c.Outbox.Concurrency > 64 {
		return bad("outbox.concurrency", "must be between 1 and 64")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "warning", "error":
	default:
		return bad("log.level", "must be debug, info, warn or error (got %q)", c.Log.Level)
	}
	if c.Log.MaxBackups < 0 || c.Log.MaxBackups > MaxLogBackups {
		return bad("log.max_backups", "must be between 0 and %d", MaxLogBackups)
	}
	return nil
}

// Floors and ceilings of the [device] keys that keep the agent a guest on
// the POS's line (rows of Bounds): a hold must fit one ECHO exchange and
// stay short (the POS waits for it); the gap must give the POS its port back.
const (
	MinHoldMax         = 500 * time.Millisecond // device.hold_max
	MaxHoldMax         = 10 * time.Second
	MinReopenGap       = time.Second // device.reopen_gap
	MaxReopenGap       = 10 * time.Minute
	MinPOSReportMaxAge = time.Hour // device.pos_report_max_age
	MaxPOSReportMaxAge = 90 * 24 * time.Hour
)

// StoreLimits are the longest [store] values the licence server accepts
// (its field, in UTF-16 code units as .NET counts them). A longer value
// fails at start, naming the key, instead of on every registration.
var StoreLimits = []struct {
	Key   string // under [store]
	Field string // the field of ParamsTPOSKasaBilgisi
	Max   int
}{
	{"tax_number", "VERGI_NUMARASI", 35},
	{"tax_office", "VERGI_DAIRESI", 50},
	{"company_name", "FIRMA_ADI", 200},
	{"einvoice_prefix", "E_FAT_NO_BAS_KOD", 15},
	{"earchive_prefix", "E_ARV_NO_BAS_KOD", 15},
}

// maxFiscalSerial is the limit of YK_FISCAL_SERI_NO (device.fiscal_serial).
const maxFiscalSerial = 40

type keyError struct{ key, msg string }

func (s *Store) value(key string) string {
	switch key {
	case "tax_number":
		return s.TaxNumber
	case "tax_office":
		return s.TaxOffice
	case "company_name":
		return s.CompanyName
	case "einvoice_prefix":
		return s.EInvoicePrefix
	case "earchive_prefix":
		return s.EArchivePrefix
	}
	panic("config: no store key " + key)
}

func (s *Store) validate() *keyError {
	for _, l := range StoreLimits {
		if n := utf16Len(strings.TrimSpace(s.value(l.Key))); n > l.Max {
			return &keyError{"store." + l.Key, fmt.Sprintf("%d characters, the licence server accepts at most %d (%s)", n, l.Max, l.Field)}
		}
	}
	if s.PeriodYear != 0 && (s.PeriodYear < 2000 || s.PeriodYear > 2100) {
		return &keyError{"store.period_year", fmt.Sprintf("must be 0 (the current year) or a year such as 2026 (got %d)", s.PeriodYear)}
	}
	return nil
}

func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// Warnings are things that work but that a person should know about.
func (c *Config) Warnings() []string {
	var w []string
	if c.TPOSL.URL == "" {
		w = append(w, "tposl.url is not set: the till is not registered and the licence stays unknown")
	}
	if c.Oduyo.BaseURL == "" {
		w = append(w, "oduyo.base_url is not set: records are accepted and kept, but not sent")
	}
	if c.NoFloors {
		w = append(w, NoFloorsEnv+" is set: durations and sizes below their floors are accepted (for tests only, never on a till)")
	}
	if c.Device.Timeout.Duration > 0 {
		w = append(w, "device.timeout is the key of an earlier version: it is read as device.ack_timeout; rename it")
	}
	if c.Device.AckTimeout.Duration > c.Device.HoldMax.Duration && c.Device.HoldMax.Duration > 0 {
		w = append(w, fmt.Sprintf("device.ack_timeout (%s) is longer than device.hold_max (%s): every wait is cut at hold_max (the default ack_timeout is 1.5s)", c.Device.AckTimeout, c.Device.HoldMax))
	}
	if strings.EqualFold(c.Device.Port, "none") && c.Device.FiscalSerial == "" {
		w = append(w, `device.port is "none" and device.fiscal_serial is empty: the till registers once the POS reports the identity (PUT /v1/device)`)
	}
	if t := len(strings.TrimSpace(c.API.Token.Reveal())); t > 0 && t < 16 {
		w = append(w, "api.token is short (under 16 characters): easy to guess")
	}
	if host, _, err := net.SplitHostPort(c.API.Listen); err == nil && !isLoopbackHost(host) {
		w = append(w, fmt.Sprintf("api.listen %s is not loopback: the local API is reachable from the network (token required on every call)", c.API.Listen))
	}
	for _, u := range []struct{ key, url string }{{"tposl.url", c.TPOSL.URL}, {"oduyo.base_url", c.Oduyo.BaseURL}} {
		if strings.HasPrefix(strings.ToLower(u.url), "http://") {
			w = append(w, fmt.Sprintf("%s uses plain http: credentials cross the network in the clear", u.key))
		}
	}
	return w
}

// checkURL accepts https anywhere and plain http only for hosts on
// loopback or a private network.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host (write the full URL, with https://)", raw)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if isPrivateHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("plain http is only allowed for loopback or private-network servers; use https for %s", u.Hostname())
	default:
		return fmt.Errorf("scheme %q: use https://", u.Scheme)
	}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isPrivateHost(host string) bool {
	if isLoopbackHost(host) {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsPrivate() || ip.IsLinkLocalUnicast()
	}
	// Single-label names and .local/.lan are on the store's own network.
	h := strings.ToLower(host)
	return !strings.Contains(h, ".") || strings.HasSuffix(h, ".local") || strings.HasSuffix(h, ".lan") || strings.HasSuffix(h, ".internal")
}

// Secret is a string that never prints: fmt, slog and JSON all show
// "[redacted]" (or "" when empty). Use Reveal for the value.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// MarshalText is used by encoding/json and the TOML encoder: secrets are
// redacted there too. Encode writes the real values on purpose.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the value.
func (s *Secret) UnmarshalText(b []byte) error { *s = Secret(b); return nil }

// Duration is a time.Duration written as "6h", "30s", "5m", or with whole
// days first: "7d", "1d12h".
type Duration struct{ time.Duration }

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// ParseDuration is time.ParseDuration that also takes whole days in
// front: "7d", "1d12h".
func ParseDuration(str string) (time.Duration, error) {
	t := strings.TrimSpace(str)
	bad := fmt.Errorf("duration %q: write it like 30s, 5m, 6h or 7d", str)
	neg := strings.HasPrefix(t, "-")
	body := strings.TrimPrefix(t, "-")
	var days time.Duration
	if i := strings.IndexByte(body, 'd'); i > 0 {
		n, err := strconv.ParseInt(body[:i], 10, 64)
		if err != nil || n > 10000 {
			return 0, bad
		}
		days, body = time.Duration(n)*24*time.Hour, body[i+1:]
		if body == "" {
			body = "0s"
		}
	}
	v, err := time.ParseDuration(body)
	if err != nil || v < 0 && days > 0 {
		return 0, bad
	}
	v += days
	if neg {
		v = -v
	}
	return v, nil
}

// Size is a byte count written as "256MiB", "10MB", "64KiB" or "1000B".
// ParseSize takes a bare number too, but a size key of the file must carry
// its unit (Bounds).
type Size int64

func (s Size) String() string {
	switch {
	case s != 0 && s%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", s>>30)
	case s != 0 && s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	case s != 0 && s%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", s>>10)
	}
	return strconv.FormatInt(int64(s), 10) + "B" // with its unit: a bare number is an error for a size key
}

func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = Size(v)
	return nil
}

// ParseSize parses "256MiB", "256MB", "1GiB", "512KiB", "1048576".
func ParseSize(str string) (int64, error) {
	t := strings.TrimSpace(str)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			mult, t = u.mult, strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: write it like 256MiB or 10MB", str)
	}
	return n * mult, nil
}
