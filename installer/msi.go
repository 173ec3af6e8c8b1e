package installer

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// MSIProperty is a public property of the Windows installer (msiexec
// NAME=value) and the installer field it sets: the MSI and "tposagent
// install" share one set of values, one validation and one writer.
type MSIProperty struct {
	Name string // msiexec property, e.g. "TPOSL_URL"
	Key  string // installer field (Fields), e.g. "tposl.url"
}

// MSIProperties lists the MSI's configuration properties, the required
// ones first, in the order of "tposagent install"'s fields.
func MSIProperties() []MSIProperty {
	return []MSIProperty{
		{"TPOSL_URL", "tposl.url"},
		{"TPOSL_USERNAME", "tposl.username"},
		{"TPOSL_PASSWORD", "tposl.password"},
		{"ODUYO_BASE_URL", "oduyo.base_url"},
		{"ODUYO_API_KEY", "oduyo.api_key"},
		{"ODUYO_USERNAME", "oduyo.username"},
		{"ODUYO_PASSWORD", "oduyo.password"},
		{"TAX_NUMBER", "store.tax_number"},
		{"TAX_OFFICE", "store.tax_office"},
		{"COMPANY_NAME", "store.company_name"},
		{"POS_NO", "store.pos_no"},
		{"DEVICE_PORT", "device.port"},
		{"FISCAL_SERIAL", "device.fiscal_serial"},
		{"API_LISTEN", "api.listen"},
	}
}

// MSIHiddenProperties are the secret properties: the MSI lists them (and
// the custom action that carries them) in MsiHiddenProperties so that
// Windows Installer keeps their values out of its logs.
func MSIHiddenProperties() []string {
	var names []string
	for _, p := range MSIProperties() {
		if f, ok := FieldByKey(p.Key); ok && f.Secret {
			names = append(names, p.Name)
		}
	}
	return names
}

// MSIPropertyForKey returns the msiexec property of an installer field.
func MSIPropertyForKey(key string) (string, bool) {
	for _, p := range MSIProperties() {
		if p.Key == key {
			return p.Name, true
		}
	}
	return "", false
}

// MaxMSIInput bounds what ReadMSIProperties accepts.
const MaxMSIInput = 64 << 10

// ReadMSIProperties reads what the MSI's custom action writes to "tposagent
// install --msi" on its standard input: one "NAME=value" line per property
// (UTF-8, "\n" after each). An empty value is a property not given. It
// returns the given values by installer field key. Errors name the line or
// the property, never a value (some are secrets).
func ReadMSIProperties(r io.Reader) (map[string]string, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxMSIInput+1))
	if err != nil {
		return nil, fmt.Errorf("read the MSI's properties: %w", err)
	}
	if len(data) > MaxMSIInput {
		return nil, fmt.Errorf("the MSI's properties exceed %d bytes", MaxMSIInput)
	}
	byName := map[string]string{}
	for _, p := range MSIProperties() {
		byName[p.Name] = p.Key
	}
	set := map[string]string{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), MaxMSIInput)
	prev := ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		key, known := byName[name]
		if !ok || !known {
			if prev != "" {
				return nil, fmt.Errorf("the value of msiexec property %s contains a line break", prev)
			}
			return nil, fmt.Errorf("the MSI's properties: line %d is not NAME=value with a known property name", n)
		}
		if seen[name] {
			return nil, fmt.Errorf("the MSI's properties: %s given twice", name)
		}
		seen[name] = true
		prev = name
		if value != "" {
			set[key] = value
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read the MSI's properties: %w", err)
	}
	return set, nil
}

// MSIMissing returns the required properties that are empty once the
// values given (by field key) are applied over what have (the existing
// config's values by key, nil for none).
func MSIMissing(have, given map[string]string) []string {
	var missing []string
	for _, p := range MSIProperties() {
		f, ok := FieldByKey(p.Key)
		if !ok || !f.Required {
			continue
		}
		v := given[p.Key]
		if v == "" {
			v = have[p.Key]
		}
		if strings.TrimSpace(v) == "" {
			missing = append(missing, p.Name)
		}
	}
	return missing
}

// MSIError rewrites an install error for the MSI log: every installer
// field or flag it names is followed by its msiexec property.
func MSIError(err error) string {
	msg := err.Error()
	var add []string
	for _, p := range MSIProperties() {
		f, _ := FieldByKey(p.Key)
		if strings.Contains(msg, p.Key) || strings.Contains(msg, "--"+f.Flag) {
			add = append(add, p.Name)
		}
	}
	if len(add) > 0 {
		return fmt.Sprintf("%s (msiexec property %s)", msg, strings.Join(add, ", "))
	}
	return msg
}
