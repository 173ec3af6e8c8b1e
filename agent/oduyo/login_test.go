package oduyo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

const tok = "abcDEF0123456789xyz"

func TestParseLogin(t *testing.T) {
	good := []string{
		`{"status":true,"data":"` + tok + `"}`,
		`{"session_id":"` + tok + `"}`,
		`{"SESSION_ID":"` + tok + `"}`,
		`{"Session_Id":"` + tok + `"}`,
		`{"sessionId":"` + tok + `"}`,
		`{"token":"` + tok + `"}`,
		`{"access_token":"` + tok + `"}`,
		`{"status":true,"data":{"SESSION_ID":"` + tok + `","user":"Ali"}}`,
		`{"status":"true","data":{"data":{"token":"` + tok + `"}}}`,
		`{"status":1,"data":"Giriş başarılı","session_id":"` + tok + `"}`,
		`{"data":"Giriş başarılı","token":"` + tok + `"}`,
		tok,
		"  " + tok + "\r\n",
		"\xef\xbb\xbf" + tok,
		`"` + tok + `"`,
	}
	for _, in := range good {
		got, err := parseLogin([]byte(in))
		if err != nil || got != tok {
			t.Errorf("parseLogin(%q) = %q, %v", in, got, err)
		}
	}

	bad := []struct {
		in    string
		class Class
	}{
		// Ödüyo's own answers (a JSON object with a boolean status).
		{`{"status":false,"message":"Şifre hatalı"}`, Auth},
		{`{"status":true}`, Auth},
		{`{"status":true,"data":"Giriş başarılı"}`, Auth},
		{`{"status":true,"data":{"data":{"data":{"data":{"token":"` + tok + `"}}}}}`, Auth}, // too deep
		// Not Ödüyo's: they say nothing about the credentials.
		{``, Transient},
		{`   `, Transient},
		{`{"data":{"x":1}}`, Transient},
		{`{"data":12345678901}`, Transient},
		{`{"token":"short"}`, Transient},
		{`{"token":"has space inside it"}`, Transient},
		{`[` + `"` + tok + `"]`, Transient},
		{`"short"`, Transient},
		{`OK`, Transient},
		{`login ok ` + tok, Transient},
		{`<html><body>Bad gateway</body></html>`, Transient},
		{`{"status": tru`, Transient},
		{`"unterminated`, Transient},
		{strings.Repeat("a", maxTokenLen+1), Transient},
	}
	for _, tc := range bad {
		got, err := parseLogin([]byte(tc.in))
		if err == nil {
			t.Errorf("parseLogin(%q) = %q, want an error", tc.in, got)
			continue
		}
		if err.Class != tc.class || err.Op != "login" {
			t.Errorf("parseLogin(%q): %v, want class %v", tc.in, err, tc.class)
		}
	}

	// The refusal names the server's message, never the body's secrets.
	_, err := parseLogin([]byte(`{"status":true,"data":{"secret":"` + tok + `"}}`))
	if err == nil || strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), "keys: data, status") {
		t.Errorf("err = %v", err)
	}
}

func FuzzParseLogin(f *testing.F) {
	f.Add([]byte(`{"status":true,"data":"` + tok + `"}`))
	f.Add([]byte(`{"status":true,"data":{"SESSION_ID":"` + tok + `"}}`))
	f.Add([]byte(tok))
	f.Add([]byte(`<html>`))
	f.Add([]byte(`{"status":false,"message":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		sid, err := parseLogin(body)
		if err != nil {
			if sid != "" {
				t.Fatal("session id with an error")
			}
			if err.Op != "login" || (err.Class != Auth && err.Class != Transient) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if !validToken(sid) || !strings.Contains(string(body), sid) && !strings.Contains(string(body), `\`) {
			t.Fatalf("session id %q not from the body %q", sid, body)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"86400", 24 * time.Hour, true},
		{"999999999999999999999999", MaxRetryAfter, true},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(72 * time.Hour).Format(http.TimeFormat), MaxRetryAfter, true},
		{"Monday, 23-Nov-26 09:01:00 GMT", time.Minute, true}, // RFC 850
		{"Mon Nov 23 09:00:10 2026", 10 * time.Second, true},  // ANSI C
		{"", 0, false},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"7s", 0, false},
	}
	for _, tc := range tests {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	e := &Error{Op: "update kasa", Class: Transient, StatusCode: 429, RetryAfter: 3 * time.Second, Msg: "too many requests"}
	tests := []struct {
		err   error
		class Class
		after time.Duration
	}{
		{nil, Transient, 0},
		{e, Transient, 3 * time.Second},
		{fmt.Errorf("send: %w", e), Transient, 3 * time.Second},
		{&Error{Class: Permanent}, Permanent, 0},
		{&Error{Class: Auth}, Auth, 0},
		{context.DeadlineExceeded, Transient, 0},
		{context.Canceled, Transient, 0},
		{errors.New("something"), Transient, 0},
	}
	for _, tc := range tests {
		c, d := Classify(tc.err)
		if c != tc.class || d != tc.after {
			t.Errorf("Classify(%v) = %v, %v; want %v, %v", tc.err, c, d, tc.class, tc.after)
		}
	}
	if got := e.Error(); got != "oduyo update kasa: http 429: too many requests (transient, retry after 3s)" {
		t.Errorf("Error() = %q", got)
	}
	wrapped := &Error{Op: "probe", Class: Transient, Msg: "unreachable", Err: context.DeadlineExceeded}
	if !errors.Is(wrapped, context.DeadlineExceeded) {
		t.Error("Unwrap lost the cause")
	}
	if Class(9).String() != "class(9)" || Auth.String() != "auth" {
		t.Error("Class.String")
	}
}
