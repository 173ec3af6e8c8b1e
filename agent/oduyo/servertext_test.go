package oduyo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestServerTextIsData: the same check for Ödüyo's words, which become a
// record's last error or dead reason (outbox list/dead, bugreport):
// escape sequences, C1 controls and bidi overrides are removed whole (the
// old code turned ESC into a space and kept "[2J", the C1 CSI and the
// override); a password echoed at the end of a long message is redacted
// before the message is cut (the old code cut first at 200 runes and kept
// the start of the password); a body that is not UTF-8 is read as
// Windows-1254 (the old code showed U+FFFD for "ş").
func TestServerTextIsData(t *testing.T) {
	const pw = "pw-secret-0123456789"
	msgs := map[string]string{
		"escapes": "\x1b[2J\x1b]0;pwned\x07Şifre yanlış \x1b[31mkırmızı\x1b[0m \u009b1m\u202edone",
		"long":    strings.Repeat("a", 190) + " " + pw,
	}
	for name, m := range msgs {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			b, _ := json.Marshal(map[string]any{"status": false, "message": m})
			w.Write(b)
		}))
		c, err := New(Config{BaseURL: ts.URL, APIKey: "a-key-1234", Username: "u", Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		oe := wantClass(t, c.Login(context.Background()), Auth, 401)
		ts.Close()
		for _, bad := range []string{"\x1b", "[2J", "\u009b", "\u202e", "\x07", "pw-s", pw} {
			if strings.Contains(oe.Msg, bad) {
				t.Errorf("%s: message %q carries %q", name, oe.Msg, bad)
			}
		}
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte("{\"status\":false,\"message\":\"\xdeifre yanl\xfd\xfe\"}")) // "Şifre yanlış" in Windows-1254
	}))
	defer ts.Close()
	c, err := New(Config{BaseURL: ts.URL, APIKey: "a-key-1234", Username: "u", Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	if oe := wantClass(t, c.Login(context.Background()), Auth, 401); !strings.Contains(oe.Msg, "Şifre yanlış") {
		t.Errorf("a Windows-1254 message reads %q, want Şifre yanlış", oe.Msg)
	}
}

// TestProbeKeepsLoginRetryAfter: a probe whose login is answered 503 with
// Retry-After carries the wait (the agent's sender turns it into the
// outbox's pause); the old code wrapped the login error and lost it.
func TestProbeKeepsLoginRetryAfter(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ts.Close()
	c, err := New(Config{BaseURL: ts.URL, APIKey: "a-key-1234", Username: "u", Password: "pw-secret"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Probe(context.Background())
	if class, ra := Classify(err); err == nil || class != Transient || ra != 120*time.Second {
		t.Fatalf("probe: %v, class %v, Retry-After %v; want Transient and 2m0s", err, class, ra)
	}
	if testing.Verbose() {
		t.Log(err)
	}
}
