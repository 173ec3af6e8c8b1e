package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// msiInput is what the MSI's custom action writes to "install --msi":
// every property, given or empty, one NAME=value line each.
func msiInput(props map[string]string) string {
	var b strings.Builder
	for _, name := range []string{"TPOSL_URL", "TPOSL_USERNAME", "TPOSL_PASSWORD", "ODUYO_BASE_URL", "ODUYO_API_KEY", "ODUYO_USERNAME",
		"ODUYO_PASSWORD", "TAX_NUMBER", "TAX_OFFICE", "COMPANY_NAME", "POS_NO", "DEVICE_PORT", "FISCAL_SERIAL", "API_LISTEN"} {
		b.WriteString(name + "=" + props[name] + "\n")
	}
	return b.String()
}

func msiFullProps() map[string]string {
	return map[string]string{
		"TPOSL_URL": "https://lisans.example.com/TPOSL", "TPOSL_USERNAME": "magaza12", "TPOSL_PASSWORD": installSecrets["TPOSAGENT_TPOSL_PASSWORD"],
		"ODUYO_BASE_URL": "https://www.siteadi.com", "ODUYO_API_KEY": installSecrets["TPOSAGENT_ODUYO_API_KEY"], "ODUYO_USERNAME": "kasa",
		"ODUYO_PASSWORD": installSecrets["TPOSAGENT_ODUYO_PASSWORD"], "TAX_NUMBER": "1234567890", "POS_NO": "3",
	}
}

// A required property missing or a value invalid: one line naming the
// msiexec property, no value shown, nothing written (the MSI then fails
// with 1603 and rolls back what it installed).
func TestInstallMSIRefusesBeforeWriting(t *testing.T) {
	for name, c := range map[string]struct {
		drop, key, value, want string
	}{
		"missing":     {drop: "ODUYO_PASSWORD", want: "missing msiexec property ODUYO_PASSWORD"},
		"not-a-whole": {key: "POS_NO", value: "üç", want: "msiexec property POS_NO"},
		"bad-url":     {key: "TPOSL_URL", value: "ftp://lisans.example.com", want: "msiexec property TPOSL_URL"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "tposagent", "config.toml")
			props := msiFullProps()
			delete(props, c.drop)
			if c.key != "" {
				props[c.key] = c.value
			}
			code, out, errOut := installCLI(t, strings.NewReader(msiInput(props)), false, installSecrets, "install", "--msi", "--config", cfg)
			if code == exitOK {
				t.Fatalf("exit 0; stdout %q", out)
			}
			if !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("stderr %q, want one line with %q", errOut, c.want)
			}
			for _, s := range installSecrets {
				if strings.Contains(out+errOut, s) {
					t.Errorf("output shows a secret: %q %q", out, errOut)
				}
			}
			if _, err := os.Stat(filepath.Dir(cfg)); err == nil {
				t.Errorf("the config dir was created")
			}
		})
	}
}

func TestInstallMSIOnlyStdin(t *testing.T) {
	code, _, errOut := installCLI(t, strings.NewReader(""), false, nil, "install", "--msi", "--tposl-url", "https://x.example/TPOSL")
	if code != exitUsage || !strings.Contains(errOut, "--tposl-url cannot be combined") {
		t.Errorf("exit %d stderr %q, want a usage error", code, errOut)
	}
}
