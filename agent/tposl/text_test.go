package tposl_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/charmap"

	"github.com/tposagent/tposagent/agent/tposl"
)

const trText = "Geçersiz şifre: İşlem yapılamadı, ğ ı Ş Ğ ü ö"

func cp1254(t *testing.T, s string) string {
	t.Helper()
	b, err := charmap.Windows1254.NewEncoder().String(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLicenceTextInWindows1254: A licence server answering
// in the Turkish ANSI code page showed U+FFFD for every ş ğ ı İ on the old
// code; now such a body is decoded as Windows-1254 (or as the charset it
// names), and UTF-8 stays UTF-8.
func TestLicenceTextInWindows1254(t *testing.T) {
	for _, tc := range []struct{ name, ctype, body string }{
		{"json, no charset", "application/json", cp1254(t, `{"Status":false,"ErrorMessageCode":7,"ErrorMessage":"`+trText+`"}`)},
		{"json, charset windows-1254", "application/json; charset=windows-1254", cp1254(t, `{"Status":false,"ErrorMessage":"`+trText+`"}`)},
		{"json, charset iso-8859-9", "application/json; charset=iso-8859-9", cp1254(t, `{"Status":false,"ErrorMessage":"`+trText+`"}`)},
		{"json, utf-8 labelled windows-1254", "application/json; charset=windows-1254", `{"Status":false,"ErrorMessage":"` + trText + `"}`},
		{"json, utf-8", "application/json; charset=utf-8", `{"Status":false,"ErrorMessage":"` + trText + `"}`},
		{"xml declared windows-1254", "application/xml", cp1254(t, `<?xml version="1.0" encoding="windows-1254"?><ITPOSReturn><Status>false</Status><ErrorMessage>`+trText+`</ErrorMessage></ITPOSReturn>`)},
		{"xml undeclared", "text/xml", cp1254(t, `<ITPOSReturn><Status>false</Status><ErrorMessage>`+trText+`</ErrorMessage></ITPOSReturn>`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ctype)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer ts.Close()
			r, err := newClient(t, ts.URL+"/TPOSL", 5*time.Second, nil).Register(context.Background(), buildParams(t))
			if err != nil {
				t.Fatal(err)
			}
			if r.ErrorMessage != trText {
				t.Errorf("ErrorMessage = %q, want %q", r.ErrorMessage, trText)
			}
			l := tposl.Evaluate(r, "JI20012345", time.Now())
			if !strings.Contains(l.Message, trText) || strings.ContainsRune(l.Message, '\uFFFD') {
				t.Errorf("message %q", l.Message)
			}
		})
	}
	// An error page in Windows-1254 is quoted readably too.
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(500)
		_, _ = w.Write([]byte(cp1254(t, `{"Message":"Sunucu hatası: şube kapalı"}`)))
	}))
	defer ts.Close()
	_, err := newClient(t, ts.URL+"/TPOSL", 5*time.Second, nil).Register(context.Background(), buildParams(t))
	if err == nil || !strings.Contains(err.Error(), "Sunucu hatası: şube kapalı") {
		t.Errorf("err = %v", err)
	}
}

// TestServerTextIsData: Escape sequences in the server's
// text (a cleared screen, a window title, a hyperlink) reached status and
// the terminal raw on the old code; the licence keeps the words, not the
// controls.
func TestServerTextIsData(t *testing.T) {
	evil := "\x1b[2J\x1b[H\x1b]0;pwned\x07Kayıt \x1b[31mreddedildi\x1b[0m\u009b31m \x1b]8;;https://evil.example\x1b\\tıkla\x1b]8;;\x1b\\\u202e"
	r := tposl.Return{Status: false, ErrorMessageCode: 3, ErrorMessage: evil, BayiKodu: "B\x1b[1m1", LisansModul: "\x07GMP"}
	l := tposl.Evaluate(r, "JI20012345", time.Now())
	for name, s := range map[string]string{"message": l.Message, "error_message": l.ErrorMessage, "dealer": l.DealerCode, "module": l.Module} {
		if strings.ContainsAny(s, "\x1b\x07\u009b\u202e") {
			t.Errorf("%s keeps control characters: %q", name, s)
		}
	}
	if l.ErrorMessage != "Kayıt reddedildi tıkla" || l.DealerCode != "B1" {
		t.Errorf("error message %q, dealer %q", l.ErrorMessage, l.DealerCode)
	}
	// The saved answer (written by an older version) is cleaned when read.
	l = tposl.Effective(tposl.Record{Return: r, CheckedAt: time.Now()}, "JI20012345", time.Now(), 0)
	if strings.ContainsAny(l.Message+l.ErrorMessage, "\x1b\x07") {
		t.Errorf("cached: %q / %q", l.Message, l.ErrorMessage)
	}
}
