package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const validFile = `
data_dir = "data"
[store]
tax_number = "1234567890"
tax_office = "Kadıköy"
company_name = "Örnek Gıda A.Ş."
[tposl]
url = "https://lisans.example.com/TPOSL"
username = "kasa1"
password = "tposl-secret-pw"
interval = "1h"
[oduyo]
base_url = "http://127.0.0.1:9999"
api_key = "oduyo-secret-key"
username = "erp"
password = "oduyo-secret-pw"
[device]
port = "/dev/ttyUSB0"
[api]
token = "0123456789abcdef0123"
[outbox]
max_size = "64MiB"
`

func write(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadValid(t *testing.T) {
	dir := t.TempDir()
	c, err := Load(write(t, dir, "\xef\xbb\xbf"+validFile)) // Notepad's BOM
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "data"); c.DataDir != want {
		t.Errorf("data_dir = %q, want %q (relative to the config file)", c.DataDir, want)
	}
	if c.Store.CompanyName != "Örnek Gıda A.Ş." || c.Store.TaxOffice != "Kadıköy" {
		t.Errorf("Turkish text not intact: %q %q", c.Store.CompanyName, c.Store.TaxOffice)
	}
	if c.TPOSL.Interval.Duration != time.Hour || c.Outbox.MaxSize != 64<<20 {
		t.Errorf("interval %v max_size %v", c.TPOSL.Interval, c.Outbox.MaxSize)
	}
	if c.Outbox.RetryMax.Duration != 5*time.Minute || c.Device.Baud != 115200 || c.API.Listen != "127.0.0.1:8787" {
		t.Errorf("defaults not kept: %+v %+v %+v", c.Outbox, c.Device, c.API)
	}
	if c.Oduyo.Password.Reveal() != "oduyo-secret-pw" {
		t.Errorf("password not read")
	}
	if w := c.Warnings(); len(w) != 1 || !strings.Contains(w[0], "oduyo.base_url") {
		t.Errorf("warnings = %q, want one about plain http", w)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, body string
		key        string
		line       int
		want       string
	}{
		{"unknown key", strings.Replace(validFile, `interval = "1h"`, `intervall = "1h"`, 1), "tposl.intervall", 11, "unknown key"},
		{"unknown section", validFile + "[outbx]\nmax_size = \"1MiB\"\n", "outbx", 23, "unknown key"},
		{"bad duration", strings.Replace(validFile, `"1h"`, `"an hour"`, 1), "", 0, "duration"},
		{"bad size", strings.Replace(validFile, `"64MiB"`, `"lots"`, 1), "", 0, "size"},
		{"wrong type", strings.Replace(validFile, `[store]`, "[store]\npos_no = \"one\"", 1), "store.pos_no", 0, ""},
		{"public http", strings.Replace(validFile, "https://lisans.example.com", "http://lisans.example.com", 1), "tposl.url", 0, "https"},
		{"bad protocol", strings.Replace(validFile, `port = "/dev/ttyUSB0"`, "port = \"/dev/ttyUSB0\"\nprotocol = \"crc32\"", 1), "device.protocol", 0, "crc16-ccitt"},
		{"tcp without port", strings.Replace(validFile, `"/dev/ttyUSB0"`, `"tcp://192.168.1.50"`, 1), "device.port", 0, "tcp://host:port"},
		{"zero tries", strings.Replace(validFile, `port = "/dev/ttyUSB0"`, "port = \"/dev/ttyUSB0\"\ntries = 0", 1), "device.tries", 0, "1..10"},
		{"no token", strings.Replace(validFile, `"0123456789abcdef0123"`, `""`, 1), "api.token", 0, "required"},
		{"zero interval", strings.Replace(validFile, `"1h"`, `"0s"`, 1), "tposl.interval", 0, "positive"},
		{"allowed host with port", strings.Replace(validFile, "[api]\n", "[api]\nallowed_hosts = [\"kasa1\", \"kasa1.local:8787\"]\n", 1), "api.allowed_hosts[1]", 0, "without scheme, port"},
		{"allowed host url", strings.Replace(validFile, "[api]\n", "[api]\nallowed_hosts = [\"http://kasa1\"]\n", 1), "api.allowed_hosts[0]", 0, "host name"},
		{"allowed host wildcard", strings.Replace(validFile, "[api]\n", "[api]\nallowed_hosts = [\"*.local\"]\n", 1), "api.allowed_hosts[0]", 0, "wildcard"},
		{"allowed host empty", strings.Replace(validFile, "[api]\n", "[api]\nallowed_hosts = [\"\"]\n", 1), "api.allowed_hosts[0]", 0, "empty"},
		{"syntax", validFile + "[[[", "", 23, ""},
		{"not utf-8", validFile + "# \xff\n", "", 0, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, t.TempDir(), tt.body))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if tt.key != "" && ce.Key != tt.key {
				t.Errorf("key = %q, want %q (%v)", ce.Key, tt.key, err)
			}
			if tt.line != 0 && ce.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", ce.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
			if errors.Is(err, ErrNotFound) {
				t.Errorf("an invalid file must not look like a missing one")
			}
			for _, s := range []string{"tposl-secret-pw", "oduyo-secret-key", "oduyo-secret-pw"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "tposagent install") {
		t.Fatalf("err = %v, want ErrNotFound with advice", err)
	}
}

func TestEnvOverridesSecrets(t *testing.T) {
	t.Setenv("TPOSAGENT_ODUYO_PASSWORD", "from-env")
	t.Setenv("TPOSAGENT_API_TOKEN", "token-from-env-0123456789")
	c, err := Load(write(t, t.TempDir(), validFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.Oduyo.Password.Reveal() != "from-env" || c.API.Token.Reveal() != "token-from-env-0123456789" {
		t.Errorf("env not applied: %q", c.Oduyo.Password.Reveal())
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	c, err := Parse([]byte(validFile), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", c, "tposl", c.TPOSL)
	js, _ := json.Marshal(c)
	outputs := []string{fmt.Sprintf("%v %+v %#v %s", c, c, c, c.TPOSL.Password), string(js), logged.String()}
	for _, out := range outputs {
		for _, s := range []string{"tposl-secret-pw", "oduyo-secret-key", "oduyo-secret-pw", "0123456789abcdef0123"} {
			if strings.Contains(out, s) {
				t.Errorf("secret %q printed in %q", s, out)
			}
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	c, err := Parse([]byte(validFile), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	c.Device.Exclude = []string{"COM1", "/dev/ttyS0"}
	c.API.AllowedHosts = []string{"kasa-1.magaza.local", "192.168.1.20", "[fe80::1]"}
	back, err := Parse(Encode(c), "x.toml")
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, Encode(c))
	}
	if !reflect.DeepEqual(c, back) {
		t.Errorf("round trip differs:\n%+v\n%+v", c, back)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "10MB": 10e6, "1GiB": 1 << 30, "4096": 4096, " 64 KiB ": 64 << 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "1.5GiB", "99999999999999GiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validFile))
	f.Add([]byte("\xef\xbb\xbf[store]\npos_no = 1\n"))
	f.Add([]byte("[tposl]\ninterval = \"-5s\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.toml")
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		_ = c.Validate()
		_ = c.Warnings()
	})
}

// TestDeviceKeys: the device keys of this version, port "none" without a
// fiscal serial (the POS reports it), and the earlier "timeout" key read
// as ack_timeout with a warning.
func TestDeviceKeys(t *testing.T) {
	body := strings.Replace(validFile, `port = "/dev/ttyUSB0"`, `port = "tcp://192.168.1.50:4444"
protocol = "T300"
ack_timeout = "2s"
tries = 5
probe_budget = "20s"`, 1)
	c, err := Load(write(t, t.TempDir(), body))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Device
	if d.Port != "tcp://192.168.1.50:4444" || d.Protocol != "T300" || d.AckTimeout.Duration != 2*time.Second || d.Tries != 5 || d.ProbeBudget.Duration != 20*time.Second {
		t.Fatalf("device %+v", d)
	}
	back, err := Parse(Encode(c), "re-encoded")
	if err != nil || back.Device.Port != d.Port || back.Device.Protocol != d.Protocol || back.Device.Tries != 5 || back.Device.AckTimeout != d.AckTimeout || back.Device.ProbeBudget != d.ProbeBudget {
		t.Fatalf("re-encoded %+v, %v", back.Device, err)
	}

	c, err = Load(write(t, t.TempDir(), strings.Replace(validFile, `"/dev/ttyUSB0"`, `"none"`, 1)))
	if err != nil {
		t.Fatalf("port none without a fiscal serial: %v", err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "PUT /v1/device") {
		t.Errorf("warnings %q", w)
	}

	c, err = Load(write(t, t.TempDir(), strings.Replace(validFile, `port = "/dev/ttyUSB0"`, "port = \"/dev/ttyUSB0\"\ntimeout = \"2s\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Device.AckTimeout.Duration != 2*time.Second {
		t.Errorf("timeout not read as ack_timeout: %v", c.Device.AckTimeout)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "device.timeout") {
		t.Errorf("warnings %q", w)
	}
}

// TestAllowedHosts: api.allowed_hosts takes names and addresses (IPv6
// with or without brackets), and refuses anything with a port, a scheme,
// a path or a wildcard, naming the entry.
func TestAllowedHosts(t *testing.T) {
	for _, h := range []string{"kasa1", "KASA-1.magaza.local", "kasa_1", "192.168.1.20", "fe80::1", "[fe80::1]"} {
		if why := checkAllowedHost(h); why != "" {
			t.Errorf("%q refused: %s", h, why)
		}
	}
	for _, h := range []string{"", " kasa1", "kasa1:8787", "http://kasa1", "kasa1/x", "*.local", "-kasa", "a..b", strings.Repeat("a", 64)} {
		if checkAllowedHost(h) == "" {
			t.Errorf("%q accepted", h)
		}
	}
	c, err := Parse([]byte(strings.Replace(validFile, "[api]\n", "[api]\nallowed_hosts = [\"kasa1\", \"192.168.1.20\"]\n", 1)), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.API.AllowedHosts, []string{"kasa1", "192.168.1.20"}) {
		t.Errorf("allowed_hosts = %q", c.API.AllowedHosts)
	}
	c.API.AllowedHosts = make([]string, MaxAllowedHosts+1)
	for i := range c.API.AllowedHosts {
		c.API.AllowedHosts[i] = fmt.Sprintf("h%d", i)
	}
	var ce *Error
	if err := c.Validate(); !errors.As(err, &ce) || ce.Key != "api.allowed_hosts" {
		t.Errorf("%d entries: %v", len(c.API.AllowedHosts), err)
	}
}

// TestDeviceSharingKeys: the keys that keep the agent a guest on the POS's
// line — their defaults, "7d" for a number of days, the round trip through
// Encode, and a value outside its floor and ceiling as an error naming
// the key.
func TestDeviceSharingKeys(t *testing.T) {
	d := Default().Device
	if d.AckTimeout.Duration != 1500*time.Millisecond || d.HoldMax.Duration != 2*time.Second || d.ReopenGap.Duration != 5*time.Second ||
		d.Scan != "usb" || d.POSReportMaxAge.Duration != 7*24*time.Hour {
		t.Fatalf("defaults %+v", d)
	}
	body := strings.Replace(validFile, `port = "/dev/ttyUSB0"`, `port = "auto"
hold_max = "3s"
reopen_gap = "10s"
scan = "all"
pos_report_max_age = "2d12h"`, 1)
	c, err := Load(write(t, t.TempDir(), body))
	if err != nil {
		t.Fatal(err)
	}
	d = c.Device
	if d.HoldMax.Duration != 3*time.Second || d.ReopenGap.Duration != 10*time.Second || d.Scan != "all" || d.POSReportMaxAge.Duration != 60*time.Hour {
		t.Fatalf("device %+v", d)
	}
	back, err := Parse(Encode(c), "re-encoded")
	if err != nil || back.Device.HoldMax != d.HoldMax || back.Device.ReopenGap != d.ReopenGap || back.Device.Scan != d.Scan || back.Device.POSReportMaxAge != d.POSReportMaxAge {
		t.Fatalf("re-encoded %+v, %v", back.Device, err)
	}
	for _, tc := range []struct{ line, key string }{
		{`hold_max = "100ms"`, "device.hold_max"},
		{`hold_max = "1m"`, "device.hold_max"},
		{`reopen_gap = "0s"`, "device.reopen_gap"},
		{`reopen_gap = "1h"`, "device.reopen_gap"},
		{`pos_report_max_age = "1m"`, "device.pos_report_max_age"},
		{`pos_report_max_age = "365d"`, "device.pos_report_max_age"},
		{`scan = "serial"`, "device.scan"},
		{`pos_report_max_age = "7days"`, "pos_report_max_age"},
	} {
		_, err := Load(write(t, t.TempDir(), strings.Replace(validFile, `port = "/dev/ttyUSB0"`, "port = \"auto\"\n"+tc.line, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v, want an error naming %s", tc.line, err, tc.key)
		}
	}
	// An ack_timeout longer than the hold (the default of earlier
	// versions, 4.5s, in an installed config) is cut there, with a warning.
	c, err = Load(write(t, t.TempDir(), strings.Replace(validFile, `port = "/dev/ttyUSB0"`, "port = \"auto\"\nack_timeout = \"4.5s\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "device.hold_max") {
		t.Errorf("warnings %q", w)
	}
}
