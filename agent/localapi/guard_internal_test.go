package localapi

import (
	"strings"
	"testing"
)

// FuzzHostGuard: whatever a Host header holds, the loopback guard never
// panics and accepts only the loopback names, with no port or the
// listening one.
func FuzzHostGuard(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "127.0.0.1:8787", "[::1]:8787", "[::1]", "localhost", "LocalHost:8787", "evil.example",
		"evil.example:8787", "[::1", "::1", "[fe80::1%eth0]:8787", "localhost:08787", "127.0.0.1:+1", "", ":", "[]:", "[::ffff:127.0.0.1]:8787",
		"127.0.0.1:8787:8787", "localhost.", "%6c%6f%63%61%6c%68%6f%73%74"} {
		f.Add(s)
	}
	g := newHostGuard("127.0.0.1:8787", nil)
	f.Fuzz(func(t *testing.T, h string) {
		if !g.allowedHost(h, "8787") {
			return
		}
		host, port := h, ""
		if strings.HasPrefix(h, "[") {
			i := strings.IndexByte(h, ']')
			host, port = h[1:i], strings.TrimPrefix(h[i+1:], ":")
		} else if a, b, ok := strings.Cut(h, ":"); ok {
			host, port = a, b
		}
		if port != "" && port != "8787" {
			t.Fatalf("%q accepted with port %q", h, port)
		}
		switch normHost(host) {
		case "localhost", "127.0.0.1", "::1":
		default:
			t.Fatalf("%q accepted", h)
		}
	})
}
