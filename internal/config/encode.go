package config

import (
	"bytes"
	"strconv"
	"strings"
	"text/template"
)

// Encode renders c as a commented TOML file with the real secret values
// (the file is created 0600 by its writer). Parse(Encode(c)) == c.
func Encode(c *Config) []byte {
	var b bytes.Buffer
	if err := fileTemplate.Execute(&b, c); err != nil {
		// The template is fixed and every field is a plain value.
		panic("config: encode: " + err.Error())
	}
	return b.Bytes()
}

func quote(s string) string { return strconv.Quote(s) }

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

var fileTemplate = template.Must(template.New("config").Funcs(template.FuncMap{
	"q":      quote,
	"qlist":  quoteList,
	"secret": func(s Secret) string { return quote(s.Reveal()) },
}).Parse(`# tposagent configuration. Keys are documented in README.md ("Configuration").
# Relative paths are relative to this file. Secrets may instead come from the
# environment (TPOSAGENT_TPOSL_PASSWORD, TPOSAGENT_ODUYO_API_KEY,
# TPOSAGENT_ODUYO_PASSWORD, TPOSAGENT_API_TOKEN).

data_dir = {{q .DataDir}}

[store]
tax_number    = {{q .Store.TaxNumber}}     # VERGI_NUMARASI (max 35)
tax_office    = {{q .Store.TaxOffice}}     # VERGI_DAIRESI (max 50)
company_name  = {{q .Store.CompanyName}}   # FIRMA_ADI (max 200)
pos_no        = {{.Store.PosNo}}
pos_type      = {{.Store.PosType}}
pos_serial    = {{q .Store.POSSerial}}     # empty: the device's ECR serial
receipt_limit = {{q .Store.ReceiptLimit}}
einvoice_active = {{.Store.EInvoiceActive}}
einvoice_prefix = {{q .Store.EInvoicePrefix}}
earchive_active = {{.Store.EArchiveActive}}
earchive_prefix = {{q .Store.EArchivePrefix}}
earchive_name_required_limit = {{q .Store.EArchiveNameRequiredLimit}}
earchive_email_required = {{.Store.EArchiveEmailRequired}}
period_year   = {{.Store.PeriodYear}}      # 0: the current year
backup_dir    = {{q .Store.BackupDir}}     # newest file here -> SON_YEDEK_ZAMANI
tpos_dir      = {{q .Store.TPOSDir}}       # TPOS install dir (version file)
tpos_version  = {{q .Store.TPOSVersion}}   # overrides the version file
tpos_version_seq = {{q .Store.TPOSVersionSeq}}

[tposl]
url      = {{q .TPOSL.URL}}
username = {{q .TPOSL.Username}}
password = {{secret .TPOSL.Password}}
interval = {{q .TPOSL.Interval.String}}
timeout  = {{q .TPOSL.Timeout.String}}
grace    = {{q .TPOSL.Grace.String}}
ca_file  = {{q .TPOSL.CAFile}}

[oduyo]
base_url = {{q .Oduyo.BaseURL}}
api_key  = {{secret .Oduyo.APIKey}}
username = {{q .Oduyo.Username}}
password = {{secret .Oduyo.Password}}
timeout  = {{q .Oduyo.Timeout.String}}
ca_file  = {{q .Oduyo.CAFile}}

[device]
port          = {{q .Device.Port}}   # "auto", "none", "COM3", "/dev/ttyUSB0", "tcp://192.168.1.50:4444"
protocol      = {{q .Device.Protocol}}   # "auto", "crc16-arc", "crc16-ccitt", "t300"
baud          = {{.Device.Baud}}
fiscal_serial = {{q .Device.FiscalSerial}}   # manual override / fallback
exclude       = {{qlist .Device.Exclude}}
ack_timeout   = {{q .Device.AckTimeout.String}}
tries         = {{.Device.Tries}}
probe_budget  = {{q .Device.ProbeBudget.String}}
hold_max      = {{q .Device.HoldMax.String}}   # one open of the port lasts at most this (the POS waits for it)
reopen_gap    = {{q .Device.ReopenGap.String}}   # at least this between two opens of one port
scan          = {{q .Device.Scan}}   # "usb" or "all": which ports "auto" may scan
pos_report_max_age = {{q .Device.POSReportMaxAge.String}}   # while the POS's report is younger, the device is not opened

[api]
listen = {{q .API.Listen}}   # loopback only unless you mean it
token  = {{secret .API.Token}}
{{if .API.AllowedHosts}}allowed_hosts = {{qlist .API.AllowedHosts}}   # more Host names a widened listen answers to
{{end}}
[outbox]
max_size         = {{q .Outbox.MaxSize.String}}
retry_max        = {{q .Outbox.RetryMax.String}}
retry_after_max  = {{q .Outbox.RetryAfterMax.String}}   # longest pause a server's Retry-After can ask for
reconnect_jitter = {{q .Outbox.ReconnectJitter.String}}
concurrency      = {{.Outbox.Concurrency}}

[log]
level       = {{q .Log.Level}}
file        = {{q .Log.File}}   # empty: <data_dir>/tposagent.log; "-": no file
max_size    = {{q .Log.MaxSize.String}}
max_backups = {{.Log.MaxBackups}}
`))
