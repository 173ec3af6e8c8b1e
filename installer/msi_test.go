package installer

import (
	"errors"
	"strings"
	"testing"
)

func TestMSIPropertiesMapOntoInstallFlags(t *testing.T) {
	seen := map[string]bool{}
	required := 0
	for _, p := range MSIProperties() {
		f, ok := FieldByKey(p.Key)
		if !ok {
			t.Errorf("%s: no installer field %q", p.Name, p.Key)
			continue
		}
		// One to one: the property is the flag, upper case, with
		// underscores (TPOSL_URL is --tposl-url), and no field twice.
		if want := strings.ToUpper(strings.ReplaceAll(f.Flag, "-", "_")); want != p.Name {
			t.Errorf("%s maps onto --%s", p.Name, f.Flag)
		}
		if seen[p.Key] {
			t.Errorf("%s: field %s mapped twice", p.Name, p.Key)
		}
		seen[p.Key] = true
		if f.Required {
			required++
		}
	}
	if len(MSIProperties()) != 14 || required != 8 {
		t.Errorf("%d properties, %d required; want 14 and 8", len(MSIProperties()), required)
	}
	for _, f := range Fields() {
		if f.Required && !seen[f.Key] {
			t.Errorf("required field %s has no msiexec property", f.Key)
		}
	}
	if got := strings.Join(MSIHiddenProperties(), ";"); got != "TPOSL_PASSWORD;ODUYO_API_KEY;ODUYO_PASSWORD" {
		t.Errorf("MSIHiddenProperties = %s", got)
	}
}

func TestReadMSIProperties(t *testing.T) {
	in := "TPOSL_URL=https://l.example/TPOSL\nTPOSL_PASSWORD=p=w;x \nTAX_OFFICE=\nPOS_NO=3\n\n"
	set, err := ReadMSIProperties(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"tposl.url": "https://l.example/TPOSL", "tposl.password": "p=w;x ", "store.pos_no": "3"}
	if len(set) != len(want) {
		t.Errorf("set = %v, want %v (an empty value is a property not given)", set, want)
	}
	for k, v := range want {
		if set[k] != v {
			t.Errorf("%s = %q, want %q", k, set[k], v)
		}
	}

	const secret = "s3cret-value"
	for _, c := range []struct{ in, want string }{
		{"TPOSL_PASSWORD=a\n" + secret + "\n", "TPOSL_PASSWORD contains a line break"},
		{"NOT_A_PROPERTY=" + secret + "\n", "line 1 is not NAME=value"},
		{secret + "\n", "line 1 is not NAME=value"},
		{"POS_NO=1\nPOS_NO=2\n", "POS_NO given twice"},
		{"TPOSL_URL=" + strings.Repeat("x", MaxMSIInput) + "\n", "exceed"},
	} {
		_, err := ReadMSIProperties(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.40q: error %v, want %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error shows a value: %v", err)
		}
	}
}

func TestMSIMissing(t *testing.T) {
	all := map[string]string{}
	for _, f := range Fields() {
		if f.Required {
			all[f.Key] = "x"
		}
	}
	if m := MSIMissing(nil, all); len(m) != 0 {
		t.Errorf("all given: missing %v", m)
	}
	given := map[string]string{"tposl.url": "https://l.example/TPOSL"}
	if m := strings.Join(MSIMissing(nil, given), " "); m != "TPOSL_USERNAME TPOSL_PASSWORD ODUYO_BASE_URL ODUYO_API_KEY ODUYO_USERNAME ODUYO_PASSWORD TAX_NUMBER" {
		t.Errorf("first install with one property: missing %s", m)
	}
	// An upgrade: the existing config has them.
	if m := MSIMissing(all, given); len(m) != 0 {
		t.Errorf("upgrade with one property: missing %v", m)
	}
}

func TestMSIErrorNamesTheProperty(t *testing.T) {
	for in, want := range map[string]string{
		`--pos-no: "abc" is not a non-negative whole number`:     "(msiexec property POS_NO)",
		"bootstrap: tposl.url: scheme must be https or http":     "(msiexec property TPOSL_URL)",
		"bootstrap: api.listen 0.0.0.0:1 and oduyo.base_url bad": "(msiexec property ODUYO_BASE_URL, API_LISTEN)",
	} {
		if got := MSIError(errors.New(in)); !strings.HasSuffix(got, want) {
			t.Errorf("MSIError(%q) = %q, want … %s", in, got, want)
		}
	}
	if got := MSIError(errors.New("disk full")); got != "disk full" {
		t.Errorf("MSIError without a field = %q", got)
	}
}
