package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestHugeFileRefusedUnread: a config file over MaxFileSize is refused by
// its size, before it is read whole; the bytes read stay bounded even when
// the size is not known in advance.
func TestHugeFileRefusedUnread(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.toml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse 4 GiB file: reading it whole would take seconds and 4 GiB.
	if err := f.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	just := write(t, t.TempDir(), validFile+"#"+strings.Repeat("x", MaxFileSize-len(validFile))+"\n")

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	_, err = Load(huge)
	took := time.Since(t0)
	runtime.ReadMemStats(&after)
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "larger than 1MiB") {
		t.Fatalf("4 GiB file: err = %v, want *Error saying it is larger than 1MiB", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("refusing a 4 GiB file allocated %d bytes", alloc)
	}
	if took > time.Second {
		t.Errorf("refusing a 4 GiB file took %v", took)
	}
	if _, err := Load(just); !errors.As(err, &ce) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("file of %d bytes: err = %v, want refused", MaxFileSize+2, err)
	}

	// A file of exactly MaxFileSize is still read.
	exact := validFile + "#" + strings.Repeat("x", MaxFileSize-len(validFile)-2) + "\n"
	if len(exact) != MaxFileSize {
		t.Fatalf("test file is %d bytes", len(exact))
	}
	if _, err := Load(write(t, t.TempDir(), exact)); err != nil {
		t.Errorf("file of exactly %d bytes: %v", MaxFileSize, err)
	}
}

func TestBounds(t *testing.T) {
	long := func(n int, r string) string { return strings.Repeat(r, n) }
	tests := []struct {
		name string
		edit func(c *Config)
		key  string // "" = valid
		want string
	}{
		{"defaults", func(c *Config) {}, "", ""},
		{"company_name 200", func(c *Config) { c.Store.CompanyName = long(200, "Ş") }, "", ""},
		{"company_name 201", func(c *Config) { c.Store.CompanyName = long(201, "Ş") }, "store.company_name", "at most 200"},
		{"company_name in UTF-16", func(c *Config) { c.Store.CompanyName = long(101, "𝕏") }, "store.company_name", "202 characters"},
		{"tax_number 36", func(c *Config) { c.Store.TaxNumber = long(36, "1") }, "store.tax_number", "at most 35"},
		{"tax_office 51", func(c *Config) { c.Store.TaxOffice = long(51, "ö") }, "store.tax_office", "at most 50"},
		{"einvoice_prefix 16", func(c *Config) { c.Store.EInvoicePrefix = long(16, "A") }, "store.einvoice_prefix", "at most 15"},
		{"earchive_prefix 16", func(c *Config) { c.Store.EArchivePrefix = long(16, "A") }, "store.earchive_prefix", "at most 15"},
		{"period_year", func(c *Config) { c.Store.PeriodYear = 20266 }, "store.period_year", "year"},
		{"fiscal_serial 41", func(c *Config) { c.Device.FiscalSerial = long(41, "J") }, "device.fiscal_serial", "at most 40"},
		{"interval huge", func(c *Config) { c.TPOSL.Interval = Duration{6000 * time.Hour} }, "tposl.interval", "at most"},
		{"interval over grace", func(c *Config) { c.TPOSL.Interval, c.TPOSL.Grace = Duration{48 * time.Hour}, Duration{24 * time.Hour} }, "tposl.interval", "shorter than tposl.grace"},
		{"grace huge", func(c *Config) { c.TPOSL.Grace = Duration{365 * 24 * time.Hour} }, "tposl.grace", "at most"},
		{"tposl timeout huge", func(c *Config) { c.TPOSL.Timeout = Duration{time.Hour} }, "tposl.timeout", "at most"},
		{"oduyo timeout huge", func(c *Config) { c.Oduyo.Timeout = Duration{time.Hour} }, "oduyo.timeout", "at most"},
		{"oduyo timeout zero", func(c *Config) { c.Oduyo.Timeout = Duration{} }, "oduyo.timeout", "positive"},
		{"retry_max huge", func(c *Config) { c.Outbox.RetryMax = Duration{48 * time.Hour} }, "outbox.retry_max", "at most 1h"},
		{"retry_max zero", func(c *Config) { c.Outbox.RetryMax = Duration{} }, "outbox.retry_max", "positive"},
		{"jitter huge", func(c *Config) { c.Outbox.ReconnectJitter = Duration{time.Hour} }, "outbox.reconnect_jitter", "at most 10m"},
		{"jitter zero", func(c *Config) { c.Outbox.ReconnectJitter = Duration{} }, "", ""},
		{"jitter negative", func(c *Config) { c.Outbox.ReconnectJitter = Duration{-time.Second} }, "outbox.reconnect_jitter", "at least"},
		{"retry_after_max huge", func(c *Config) { c.Outbox.RetryAfterMax = Duration{48 * time.Hour} }, "outbox.retry_after_max", "at most 24h"},
		{"retry_after_max zero", func(c *Config) { c.Outbox.RetryAfterMax = Duration{} }, "outbox.retry_after_max", "at least 1s"},
		{"log size huge", func(c *Config) { c.Log.MaxSize = 2 << 30 }, "log.max_size", "at most 1GiB"},
		{"log backups huge", func(c *Config) { c.Log.MaxBackups = 1000 }, "log.max_backups", "between"},
		{"blank token", func(c *Config) { c.API.Token = " \t " }, "api.token", "blank"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(validFile), "x.toml")
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(c)
			// Through the file, as the agent reads it.
			path := write(t, t.TempDir(), string(Encode(c)))
			_, err = Load(path)
			if tt.key == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want key %s and %q", err, tt.key, tt.want)
			}
		})
	}
}

func TestShortTokenWarns(t *testing.T) {
	c, err := Parse([]byte(validFile), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	for tok, warn := range map[string]bool{"short-1": true, "  short-padded-1  ": true, "0123456789abcdef": false} {
		c.API.Token = Secret(tok)
		if err := c.Validate(); err != nil {
			t.Fatalf("token %q: %v", tok, err)
		}
		got := strings.Contains(strings.Join(c.Warnings(), "\n"), "api.token is short")
		if got != warn {
			t.Errorf("token of %d characters: warned %v, want %v", len(tok), got, warn)
		}
	}
}
