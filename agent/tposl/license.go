package tposl

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/internal/textsafe"
)

// The licence value types live in agent/license, so that the local API
// can serve them without importing this client; these aliases keep them
// reachable under their old names.
type (
	State   = license.State
	License = license.License
	GMP3    = license.GMP3
)

// The licence states and sources (see agent/license).
const (
	Licensed     = license.Licensed
	Demo         = license.Demo
	Expired      = license.Expired
	Inactive     = license.Inactive
	Mismatch     = license.Mismatch
	Unregistered = license.Unregistered
	StateUnknown = license.StateUnknown

	SourceServer = license.SourceServer
	SourceCache  = license.SourceCache
	SourceNone   = license.SourceNone
)

// DefaultGrace is how long a cached answer stands in for the server.
const DefaultGrace = 7 * 24 * time.Hour

// dateLayout is how License shows dates.
const dateLayout = "2006-01-02"

// Unknown is the state when the server was never reached.
func Unknown(reason string) License {
	return License{
		State:    StateUnknown,
		DaysLeft: -1,
		Source:   SourceNone,
		Message:  oneLine(reason),
		GMP3:     GMP3{DaysLeft: -1},
	}
}

// Evaluate turns the server's answer into a licence state. It is pure: the
// first matching row of the table in docs/protocols.md wins, "today" is the calendar
// date of now in now's location, and server dates without a zone are read
// in that location. Source is "server" and CheckedAt is now.
//
// Rows: Status false → unregistered; Aktif != 1 → inactive;
// OnayFiscalSeriNo set and not ours (blanks and case ignored) → mismatch;
// DemoLisansGun > 0 and DemoBasTarih + DemoLisansGun days ≥ today → demo;
// demo over, or LisansStatus != 1 → expired; otherwise licensed.
// A demo whose start date is empty or unreadable cannot be shown to be
// over: with LisansStatus 1 it is licensed, otherwise demo with DaysLeft -1.
//
// The server's text (ErrorMessage, codes, dates) is cleaned of terminal
// control characters first: it is data.
func Evaluate(r Return, fiscalSerial string, now time.Time) License {
	r = cleanReturn(r)
	loc := now.Location()
	l := License{
		DaysLeft:             -1,
		CheckedAt:            now,
		Source:               SourceServer,
		LicenseStatus:        r.LisansStatus,
		GMP3:                 gmp3(r, now),
		FiscalSerial:         strings.TrimSpace(fiscalSerial),
		ApprovedFiscalSerial: strings.TrimSpace(r.OnayFiscalSeriNo),
		RegistrationID:       r.Id,
		DealerCode:           r.BayiKodu,
		ProgramCode:          r.ProgramKodu,
		Module:               r.LisansModul,
		ErrorCode:            r.ErrorMessageCode,
		ErrorMessage:         oneLine(r.ErrorMessage),
	}
	if r.DemoLisansGun > 0 {
		l.DemoDays = r.DemoLisansGun
	}

	if !r.Status {
		l.State = Unregistered
		l.Message = "the licence server refused the registration"
		if r.ErrorMessageCode != 0 {
			l.Message += fmt.Sprintf(" (code %d)", r.ErrorMessageCode)
		}
		if m := oneLine(r.ErrorMessage); m != "" {
			l.Message += ": " + m
		}
		return l
	}
	if r.Aktif != 1 {
		l.State = Inactive
		l.Message = fmt.Sprintf("the licence of this till is not active on the server (Aktif %d)", r.Aktif)
		return l
	}
	if l.ApprovedFiscalSerial != "" && !strings.EqualFold(l.ApprovedFiscalSerial, l.FiscalSerial) {
		l.State = Mismatch
		ours := l.FiscalSerial
		if ours == "" {
			ours = "unknown"
		}
		l.Message = fmt.Sprintf("the licence is approved for fiscal serial %s, but this till's device is %s", l.ApprovedFiscalSerial, ours)
		return l
	}

	today := civil(now)
	demoOver := false
	if r.DemoLisansGun > 0 {
		start, ok := ParseDate(r.DemoBasTarih, loc)
		switch {
		case ok:
			s := civil(start.In(loc))
			end := s.AddDate(0, 0, r.DemoLisansGun)
			l.DemoStart, l.DemoEnd = s.Format(dateLayout), end.Format(dateLayout)
			left := days(today, end)
			if left >= 0 {
				l.State, l.DaysLeft = Demo, left
				if left == 0 {
					l.Message = "demo licence: the last day is today"
				} else {
					l.Message = fmt.Sprintf("demo licence: %d days left, until %s", left, l.DemoEnd)
				}
				return l
			}
			demoOver = true
		case r.LisansStatus != 1:
			l.State = Demo
			l.Message = fmt.Sprintf("demo licence of %d days; the start date %s is unreadable, days left unknown", r.DemoLisansGun, quoteShort(r.DemoBasTarih))
			return l
		}
	}
	if demoOver {
		l.State, l.DaysLeft = Expired, 0
		l.Message = fmt.Sprintf("the demo licence ended on %s", l.DemoEnd)
		return l
	}
	if r.LisansStatus != 1 {
		l.State, l.DaysLeft = Expired, 0
		l.Message = fmt.Sprintf("not licensed (licence status %d)", r.LisansStatus)
		return l
	}
	l.State = Licensed
	l.Message = "licensed"
	if m := strings.TrimSpace(r.LisansModul); m != "" {
		l.Message += " (" + oneLine(m) + ")"
	}
	return l
}

func gmp3(r Return, now time.Time) GMP3 {
	g := GMP3{Status: r.GMP3Status, DaysLeft: -1, ExpDate: strings.TrimSpace(r.GMP3ExpDate)}
	active := r.GMP3Status == 1
	if t, ok := ParseDate(r.GMP3ExpDate, now.Location()); ok {
		exp := civil(t.In(now.Location()))
		g.ExpDate = exp.Format(dateLayout)
		left := days(civil(now), exp)
		if left < 0 {
			active, left = false, 0
		}
		g.DaysLeft = left
	}
	g.Active = active
	return g
}

// civil is the calendar date of t (in t's location) as midnight UTC, so
// that differences are whole days regardless of DST.
func civil(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func days(from, to time.Time) int {
	return int(to.Sub(from).Round(time.Hour).Hours()) / 24
}

// oneLine collapses white space so a server message fits one line, and
// removes terminal control characters.
func oneLine(s string) string {
	return strings.Join(strings.Fields(textsafe.Clean(s)), " ")
}

func quoteShort(s string) string {
	r := []rune(s)
	if len(r) > 40 {
		s = string(r[:40]) + "…"
	}
	return strconv.Quote(s)
}

// dateLayouts are tried in order by ParseDate. Besides the formats of
// docs/protocols.md it takes the zone-less ISO form and "02.01.2006 15:04:05",
// which .NET servers with the Turkish culture also produce.
var dateLayouts = []string{
	"2006-01-02",
	"2006-01-02 15:04:05",
	"02.01.2006",
	"02.01.2006 15:04:05",
	"2006-01-02T15:04:05",
}

// ParseDate reads a date of the licence server: 2006-01-02,
// 2006-01-02 15:04:05, 02.01.2006, RFC 3339, .NET /Date(ms)/ and
// /Date(ms+0300)/ (also \/Date(...)\/ and fractional seconds). Forms
// without a zone are read in loc (nil: time.Local). Anything else, or a
// year outside 1..9999, is false; it never panics.
func ParseDate(s string, loc *time.Location) (time.Time, bool) {
	if loc == nil {
		loc = time.Local
	}
	s = strings.TrimSpace(s)
	if len(s) == 0 || len(s) > 64 {
		return time.Time{}, false
	}
	if t, ok := parseDotNet(s); ok {
		return checked(t)
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return checked(t)
	}
	for _, layout := range dateLayouts {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return checked(t)
		}
	}
	return time.Time{}, false
}

func validYear(t time.Time) bool {
	y := t.Year()
	return y >= 1 && y <= 9999
}

// checked returns t, true if its year is in range, else the zero time.
func checked(t time.Time) (time.Time, bool) {
	if !validYear(t) {
		return time.Time{}, false
	}
	return t, true
}

// parseDotNet reads /Date(ms)/, /Date(ms+hhmm)/, /Date(ms-hhmm)/.
func parseDotNet(s string) (time.Time, bool) {
	s = strings.ReplaceAll(s, `\/`, "/")
	inner, ok := strings.CutPrefix(s, "/Date(")
	if !ok {
		return time.Time{}, false
	}
	inner, ok = strings.CutSuffix(inner, ")/")
	if !ok || inner == "" {
		return time.Time{}, false
	}
	msPart, zone := inner, ""
	if i := strings.LastIndexAny(inner, "+-"); i > 0 {
		msPart, zone = inner[:i], inner[i:]
	}
	ms, err := strconv.ParseInt(msPart, 10, 64)
	if err != nil || ms > 253402300799999 || ms < -62135596800000 {
		return time.Time{}, false
	}
	t := time.UnixMilli(ms).UTC()
	if zone != "" {
		if len(zone) != 5 {
			return time.Time{}, false
		}
		hh, err1 := strconv.Atoi(zone[1:3])
		mm, err2 := strconv.Atoi(zone[3:5])
		if err1 != nil || err2 != nil || hh > 14 || mm > 59 || zone[1] == '+' || zone[1] == '-' || zone[3] == '+' || zone[3] == '-' {
			return time.Time{}, false
		}
		off := hh*3600 + mm*60
		if zone[0] == '-' {
			off = -off
		}
		t = t.In(time.FixedZone(zone, off))
	}
	return t, true
}
