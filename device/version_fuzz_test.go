package device

import (
	"strings"
	"testing"
)

// FuzzParseVersion feeds arbitrary version-file bytes: never a panic, and
// the results are single trimmed tokens or values.
func FuzzParseVersion(f *testing.F) {
	f.Add([]byte("VERSIYON=3.4.1\nVERSIYON_SIRA=412\n"))
	f.Add([]byte("\xEF\xBB\xBF3.4.1 412\r\n"))
	f.Add([]byte("S\xFDra: 9\n[tpos]\nversion = \"1.0\"\n"))
	f.Add([]byte("\n\n=\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, s := parseVersion(b)
		if strings.ContainsAny(v, "\r\n") || strings.ContainsAny(s, "\r\n") {
			t.Fatalf("multi-line result %q %q", v, s)
		}
	})
}
