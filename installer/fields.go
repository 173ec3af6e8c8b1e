package installer

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tposagent/tposagent/internal/config"
)

// Field is one config value the installer sets from a flag, an environment
// variable or a prompt.
type Field struct {
	Key      string // dotted config key, e.g. "tposl.url"
	Flag     string // command-line flag, without dashes
	Env      string // environment variable
	Usage    string
	Secret   bool // read without echo; never printed
	Required bool // asked for (or an error in --unattended) when empty

	get func(c *config.Config) string
	set func(c *config.Config, v string) error
}

// Get returns the field's value in c.
func (f Field) Get(c *config.Config) string { return f.get(c) }

// Set stores v in c, checking its type.
func (f Field) Set(c *config.Config, v string) error {
	if err := f.set(c, v); err != nil {
		return fmt.Errorf("--%s: %w", f.Flag, err)
	}
	return nil
}

func str(get func(c *config.Config) *string) (func(*config.Config) string, func(*config.Config, string) error) {
	return func(c *config.Config) string { return *get(c) },
		func(c *config.Config, v string) error { *get(c) = v; return nil }
}

func secret(get func(c *config.Config) *config.Secret) (func(*config.Config) string, func(*config.Config, string) error) {
	return func(c *config.Config) string { return get(c).Reveal() },
		func(c *config.Config, v string) error { *get(c) = config.Secret(v); return nil }
}

func integer(get func(c *config.Config) *int) (func(*config.Config) string, func(*config.Config, string) error) {
	return func(c *config.Config) string { return strconv.Itoa(*get(c)) },
		func(c *config.Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				return fmt.Errorf("%q is not a non-negative whole number", v)
			}
			*get(c) = n
			return nil
		}
}

func field(key, flag, usage string, secretField, required bool, get func(*config.Config) string, set func(*config.Config, string) error) Field {
	return Field{Key: key, Flag: flag, Env: envName(key), Usage: usage, Secret: secretField, Required: required, get: get, set: set}
}

// envName is the variable of config.EnvOverrides for key, or
// TPOSAGENT_<KEY> (dots as underscores) for keys only the installer reads.
func envName(key string) string {
	for _, o := range config.EnvOverrides {
		if o.Key == key {
			return o.Name
		}
	}
	return "TPOSAGENT_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
}

// Fields lists every value the installer sets, in prompt order.
func Fields() []Field {
	f := func(key, flag, usage string, sec, req bool, g func(*config.Config) string, s func(*config.Config, string) error) Field {
		return field(key, flag, usage, sec, req, g, s)
	}
	var fs []Field
	add := func(x Field) { fs = append(fs, x) }
	{
		g, s := str(func(c *config.Config) *string { return &c.TPOSL.URL })
		add(f("tposl.url", "tposl-url", "TPOSL licence server endpoint URL (e.g. https://lisans.triaeczane.com/TPOSL)", false, true, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.TPOSL.Username })
		add(f("tposl.username", "tposl-username", "TPOSL user (WebErisimKullanici)", false, true, g, s))
	}
	{
		g, s := secret(func(c *config.Config) *config.Secret { return &c.TPOSL.Password })
		add(f("tposl.password", "tposl-password", "TPOSL password (WebErisimSifre); prefer the environment variable", true, true, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.Oduyo.BaseURL })
		add(f("oduyo.base_url", "oduyo-base-url", "Ödüyo base URL (https://www.siteadi.com)", false, true, g, s))
	}
	{
		g, s := secret(func(c *config.Config) *config.Secret { return &c.Oduyo.APIKey })
		add(f("oduyo.api_key", "oduyo-api-key", "Ödüyo API key; prefer the environment variable", true, true, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.Oduyo.Username })
		add(f("oduyo.username", "oduyo-username", "Ödüyo user", false, true, g, s))
	}
	{
		g, s := secret(func(c *config.Config) *config.Secret { return &c.Oduyo.Password })
		add(f("oduyo.password", "oduyo-password", "Ödüyo password; prefer the environment variable", true, true, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.Store.TaxNumber })
		add(f("store.tax_number", "tax-number", "store tax number (VERGI_NUMARASI)", false, true, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.Store.TaxOffice })
		add(f("store.tax_office", "tax-office", "store tax office (VERGI_DAIRESI)", false, false, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.Store.CompanyName })
		add(f("store.company_name", "company-name", "company name (FIRMA_ADI)", false, false, g, s))
	}
	{
		g, s := integer(func(c *config.Config) *int { return &c.Store.PosNo })
		add(f("store.pos_no", "pos-no", "till number in the store (POS_NO)", false, false, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.Device.Port })
		add(f("device.port", "device-port", `fiscal device port: "auto", "none", COM3, /dev/ttyUSB0`, false, false, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.Device.FiscalSerial })
		add(f("device.fiscal_serial", "fiscal-serial", `fiscal serial when device.port is "none" (or a fallback)`, false, false, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.API.Listen })
		add(f("api.listen", "api-listen", "local API address (loopback unless you mean it)", false, false, g, s))
	}
	{
		g, s := secret(func(c *config.Config) *config.Secret { return &c.API.Token })
		add(f("api.token", "api-token", "local API token (default: generated once, kept on re-install)", true, false, g, s))
	}
	{
		g, s := str(func(c *config.Config) *string { return &c.DataDir })
		add(f("data_dir", "data-dir", "data directory (default: the OS location)", false, false, g, s))
	}
	return fs
}

// FieldByKey returns the field for a dotted key.
func FieldByKey(key string) (Field, bool) {
	for _, f := range Fields() {
		if f.Key == key {
			return f, true
		}
	}
	return Field{}, false
}
