// Package i18n holds the words the agent shows to people — the status page
// and the CLI's human output — in Turkish and English. Logs stay English
// and machine output (JSON) has no language.
//
// Text is written at the call site as a pair, English first:
//
//	l.T("Licence", "Lisans")
//
// so the two versions are read and changed together.
package i18n

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Lang is a language for people.
type Lang string

// The languages.
const (
	TR Lang = "tr"
	EN Lang = "en"
)

// T returns en or tr.
func (l Lang) T(en, tr string) string {
	if l == TR {
		return tr
	}
	return en
}

// F is T with fmt.Sprintf.
func (l Lang) F(en, tr string, a ...any) string { return fmt.Sprintf(l.T(en, tr), a...) }

// Parse reads a language flag: "tr", "en", "tr_TR.UTF-8", "en-US"; ok is
// false for anything else.
func Parse(s string) (Lang, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "tr" || strings.HasPrefix(s, "tr_") || strings.HasPrefix(s, "tr-") || strings.HasPrefix(s, "tr."):
		return TR, true
	case s == "en" || strings.HasPrefix(s, "en_") || strings.HasPrefix(s, "en-") || strings.HasPrefix(s, "en."):
		return EN, true
	}
	return "", false
}

// FromEnv follows the POSIX locale variables in their order of precedence
// (LC_ALL, LC_MESSAGES, LANG): Turkish for a tr_* locale, else English.
// Where none is set, system (the OS's UI language, "" if unknown) decides.
func FromEnv(lookup func(string) (string, bool), system string) Lang {
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v, ok := lookup(k); ok && v != "" {
			if l, ok := Parse(v); ok {
				return l
			}
			return EN // C, POSIX, de_DE, …
		}
	}
	if l, ok := Parse(system); ok {
		return l
	}
	return EN
}

// FromAcceptLanguage picks the language of an HTTP Accept-Language header
// for the status page: Turkish unless English is preferred over Turkish
// (by q-value, then by order). An empty or unreadable header is Turkish.
func FromAcceptLanguage(h string) Lang {
	bestTR, bestEN := -1.0, -1.0
	for part := range strings.SplitSeq(h, ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				continue
			}
			q = f
		}
		if q == 0 {
			continue
		}
		switch l, _ := Parse(tag); l {
		case TR:
			bestTR = max(bestTR, q)
		case EN:
			if bestEN < q {
				bestEN = q
			}
		}
	}
	if bestEN > bestTR {
		return EN
	}
	return TR
}

// State names a licence state in words.
func (l Lang) State(state string) string {
	switch state {
	case "licensed":
		return l.T("Licensed", "Lisanslı")
	case "demo":
		return l.T("Demo licence", "Demo lisans")
	case "expired":
		return l.T("Expired", "Süresi dolmuş")
	case "inactive":
		return l.T("Inactive (switched off by the licence server)", "Pasif (lisans sunucusu kapatmış)")
	case "mismatch":
		return l.T("Registered to another cash register", "Başka bir yazarkasaya kayıtlı")
	case "unregistered":
		return l.T("Not registered", "Kayıtlı değil")
	}
	return l.T("Unknown (no answer from the licence server yet)", "Bilinmiyor (lisans sunucusundan henüz cevap yok)")
}

// Source names where a value came from.
func (l Lang) Source(src string) string {
	switch src {
	case "device":
		return l.T("read from the cash register", "yazarkasadan okundu")
	case "config":
		return l.T("from the configuration", "yapılandırmadan")
	case "pos":
		return l.T("reported by the POS program", "POS programı bildirdi")
	case "cache":
		return l.T("remembered from an earlier read", "önceki okumadan hatırlanan")
	case "server":
		return l.T("from the licence server", "lisans sunucusundan")
	case "none", "":
		return l.T("none", "yok")
	}
	return src
}

// Days is "1 day" / "20 days" / "20 gün".
func (l Lang) Days(n int) string {
	if l == TR {
		return strconv.Itoa(n) + " gün"
	}
	if n == 1 || n == -1 {
		return strconv.Itoa(n) + " day"
	}
	return strconv.Itoa(n) + " days"
}

// Duration is a rounded, readable span: "45 s", "12 min", "3 h 5 min",
// "2 days 4 h" (Turkish: "45 sn", "12 dk", "3 sa 5 dk", "2 gün 4 sa").
func (l Lang) Duration(d time.Duration) string {
	d = d.Abs()
	s, m, h := l.T("s", "sn"), l.T("min", "dk"), l.T("h", "sa")
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d %s", int(d/time.Second), s)
	case d < time.Hour:
		return fmt.Sprintf("%d %s", int(d/time.Minute), m)
	case d < 24*time.Hour:
		hh, mm := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if mm == 0 {
			return fmt.Sprintf("%d %s", hh, h)
		}
		return fmt.Sprintf("%d %s %d %s", hh, h, mm, m)
	}
	days, hh := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if hh == 0 {
		return l.Days(days)
	}
	return fmt.Sprintf("%s %d %s", l.Days(days), hh, h)
}

// Ago is "12 min ago" / "12 dk önce".
func (l Lang) Ago(d time.Duration) string {
	return l.F("%s ago", "%s önce", l.Duration(d))
}

// Time is a local date and time: "27.11.2026 14:05" in Turkish,
// "2026-11-27 14:05" in English.
func (l Lang) Time(t time.Time) string {
	return t.Local().Format(l.T("2006-01-02 15:04", "02.01.2006 15:04"))
}

// Date is a date written "2006-01-02" by the servers, in the reader's
// form ("27.11.2026" in Turkish); anything unreadable is returned as is.
func (l Lang) Date(s string) string {
	t, err := time.Parse("2006-01-02", s)
	if err != nil || l != TR {
		return s
	}
	return t.Format("02.01.2006")
}

// YesNo is yes/no, evet/hayır.
func (l Lang) YesNo(b bool) string {
	if b {
		return l.T("yes", "evet")
	}
	return l.T("no", "hayır")
}
