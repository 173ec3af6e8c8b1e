package tposl_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
)

// fixedNow is 2026-11-23 10:00 on a Turkish till.
var fixedNow = time.Date(2026, 11, 23, 10, 0, 0, 0, trt)

const ours = "JI20012345"

// ok is an active, registered answer for our device without licence data.
func ok(mod func(*tposl.Return)) tposl.Return {
	r := tposl.Return{Status: true, Aktif: 1, OnayFiscalSeriNo: ours, Id: 9, BayiKodu: "B1", LisansModul: "TPOS"}
	if mod != nil {
		mod(&r)
	}
	return r
}

// dotNet is the /Date(ms)/ form of t.
func dotNet(t time.Time, zone string) string {
	return fmt.Sprintf("/Date(%d%s)/", t.UnixMilli(), zone)
}

func TestEvaluate(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, trt) }
	demo := func(start string, days, lisans int) tposl.Return {
		return ok(func(r *tposl.Return) { r.DemoBasTarih, r.DemoLisansGun, r.LisansStatus = start, days, lisans })
	}
	tests := []struct {
		name     string
		r        tposl.Return
		serial   string
		state    tposl.State
		daysLeft int
		msg      string // substring of Message
	}{
		// Row 1: unregistered.
		{"status false", tposl.Return{Status: false, ErrorMessageCode: 12, ErrorMessage: "Kullanıcı adı\nveya şifre hatalı"}, ours, tposl.Unregistered, -1, "(code 12): Kullanıcı adı veya şifre hatalı"},
		{"status false beats a full licence", ok(func(r *tposl.Return) { r.Status = false; r.LisansStatus = 1 }), ours, tposl.Unregistered, -1, "refused"},
		{"zero answer", tposl.Return{}, ours, tposl.Unregistered, -1, "refused"},
		// Row 2: inactive.
		{"aktif 0", ok(func(r *tposl.Return) { r.Aktif = 0; r.LisansStatus = 1 }), ours, tposl.Inactive, -1, "Aktif 0"},
		{"aktif 2", ok(func(r *tposl.Return) { r.Aktif = 2; r.LisansStatus = 1 }), ours, tposl.Inactive, -1, "Aktif 2"},
		{"inactive beats mismatch", ok(func(r *tposl.Return) { r.Aktif = 0; r.OnayFiscalSeriNo = "XX99999999" }), ours, tposl.Inactive, -1, "not active"},
		// Row 3: mismatch.
		{"other serial", ok(func(r *tposl.Return) { r.OnayFiscalSeriNo = "JI20099999"; r.LisansStatus = 1 }), ours, tposl.Mismatch, -1, "JI20099999"},
		{"we have no serial", ok(func(r *tposl.Return) { r.LisansStatus = 1 }), "", tposl.Mismatch, -1, "unknown"},
		{"mismatch beats demo", demo("2026-11-20", 30, 0), "JI20000000", tposl.Mismatch, -1, "JI20012345"},
		{"serial blanks and case ignored", ok(func(r *tposl.Return) { r.OnayFiscalSeriNo = " ji20012345 "; r.LisansStatus = 1 }), ours, tposl.Licensed, -1, "licensed"},
		{"no approved serial", ok(func(r *tposl.Return) { r.OnayFiscalSeriNo = ""; r.LisansStatus = 1 }), ours, tposl.Licensed, -1, "licensed"},
		// Row 4: demo.
		{"demo middle", demo("2026-11-13", 30, 0), ours, tposl.Demo, 20, "20 days left, until 2026-12-13"},
		{"demo first day", demo("2026-11-23", 30, 0), ours, tposl.Demo, 30, "30 days"},
		{"demo last day", demo("2026-10-24", 30, 0), ours, tposl.Demo, 0, "last day is today"},
		{"demo one day left", demo("2026-10-25", 30, 0), ours, tposl.Demo, 1, "1 days left"},
		{"demo over yesterday", demo("2026-10-23", 30, 0), ours, tposl.Expired, 0, "ended on 2026-11-22"},
		{"demo starting later", demo("2026-12-01", 10, 0), ours, tposl.Demo, 18, "18 days"},
		{"demo with licence status 1", demo("2026-11-13", 30, 1), ours, tposl.Demo, 20, "demo"},
		{"demo over with licence status 1 (table: expired)", demo("2025-01-01", 30, 1), ours, tposl.Expired, 0, "ended"},
		{"demo days zero is no demo", demo("2026-11-13", 0, 0), ours, tposl.Expired, 0, "licence status 0"},
		{"demo days negative is no demo", demo("2026-11-13", -5, 1), ours, tposl.Licensed, -1, "licensed"},
		// Demo start in every date format.
		{"format 2006-01-02 15:04:05", demo("2026-11-13 23:59:59", 30, 0), ours, tposl.Demo, 20, ""},
		{"format 02.01.2006", demo("13.11.2026", 30, 0), ours, tposl.Demo, 20, ""},
		{"format 02.01.2006 15:04:05", demo("13.11.2026 08:00:00", 30, 0), ours, tposl.Demo, 20, ""},
		{"format RFC 3339 local", demo("2026-11-13T00:00:00+03:00", 30, 0), ours, tposl.Demo, 20, ""},
		{"format RFC 3339 UTC late evening is next day here", demo("2026-11-12T22:30:00Z", 30, 0), ours, tposl.Demo, 20, ""},
		{"format RFC 3339 fraction", demo("2026-11-13T10:00:00.1234567+03:00", 30, 0), ours, tposl.Demo, 20, ""},
		{"format ISO without zone", demo("2026-11-13T00:00:00", 30, 0), ours, tposl.Demo, 20, ""},
		{"format /Date(ms)/", demo(dotNet(day(2026, 11, 13), ""), 30, 0), ours, tposl.Demo, 20, ""},
		{"format /Date(ms)/ UTC evening", demo(dotNet(time.Date(2026, 11, 12, 22, 30, 0, 0, time.UTC), ""), 30, 0), ours, tposl.Demo, 20, ""},
		{"format /Date(ms+0300)/", demo(dotNet(day(2026, 11, 13), "+0300"), 30, 0), ours, tposl.Demo, 20, ""},
		{"format \\/Date(ms)\\/", demo(strings.ReplaceAll(dotNet(day(2026, 11, 13), ""), "/", `\/`), 30, 0), ours, tposl.Demo, 20, ""},
		// Empty and garbage demo dates.
		{"demo empty start, not licensed", demo("", 30, 0), ours, tposl.Demo, -1, "unreadable"},
		{"demo garbage start, not licensed", demo("yarın", 30, 0), ours, tposl.Demo, -1, `"yarın"`},
		{"demo impossible date", demo("2026-02-30", 30, 0), ours, tposl.Demo, -1, "unreadable"},
		{"demo garbage start, licensed", demo("??", 30, 1), ours, tposl.Licensed, -1, "licensed"},
		{"empty dates, licensed", ok(func(r *tposl.Return) { r.LisansStatus = 1 }), ours, tposl.Licensed, -1, "licensed (TPOS)"},
		// Rows 5 and 6.
		{"not licensed", ok(func(r *tposl.Return) { r.LisansStatus = 0 }), ours, tposl.Expired, 0, "licence status 0"},
		{"licence status 2 kept raw", ok(func(r *tposl.Return) { r.LisansStatus = 2 }), ours, tposl.Expired, 0, "licence status 2"},
		{"licence status -1", ok(func(r *tposl.Return) { r.LisansStatus = -1 }), ours, tposl.Expired, 0, "-1"},
		{"licensed", ok(func(r *tposl.Return) { r.LisansStatus = 1 }), ours, tposl.Licensed, -1, "licensed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tposl.Evaluate(tt.r, tt.serial, fixedNow)
			if l.State != tt.state || l.DaysLeft != tt.daysLeft {
				t.Errorf("state %s days %d, want %s days %d (%s)", l.State, l.DaysLeft, tt.state, tt.daysLeft, l.Message)
			}
			if !strings.Contains(l.Message, tt.msg) || strings.Contains(l.Message, "\n") {
				t.Errorf("message %q, want it to contain %q on one line", l.Message, tt.msg)
			}
			if l.Source != "server" || !l.CheckedAt.Equal(fixedNow) {
				t.Errorf("source %q checked %v", l.Source, l.CheckedAt)
			}
			if l.LicenseStatus != tt.r.LisansStatus {
				t.Errorf("license_status %d, want raw %d", l.LicenseStatus, tt.r.LisansStatus)
			}
		})
	}
}

func TestEvaluateDetails(t *testing.T) {
	r := ok(func(r *tposl.Return) {
		r.DemoBasTarih, r.DemoLisansGun = "13.11.2026", 30
		r.GMP3Status, r.GMP3ExpDate = 1, "2027-03-03"
		r.ProgramKodu = "P7"
	})
	l := tposl.Evaluate(r, ours, fixedNow)
	if l.DemoStart != "2026-11-13" || l.DemoEnd != "2026-12-13" || l.DemoDays != 30 ||
		l.RegistrationID != 9 || l.DealerCode != "B1" || l.ProgramCode != "P7" || l.Module != "TPOS" ||
		l.ApprovedFiscalSerial != ours || l.FiscalSerial != ours {
		t.Errorf("details: %+v", l)
	}
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, k := range []string{"state", "days_left", "checked_at", "source", "message", "license_status", "gmp3"} {
		if _, ok := m[k]; !ok {
			t.Errorf("json lacks %q: %s", k, b)
		}
	}
	g := m["gmp3"].(map[string]any)
	if g["active"] != true || g["days_left"] != float64(100) || g["exp_date"] != "2027-03-03" || g["status"] != float64(1) {
		t.Errorf("gmp3 json: %v", g)
	}
	if m["checked_at"] != "2026-11-23T10:00:00+03:00" {
		t.Errorf("checked_at %v", m["checked_at"])
	}
}

func TestEvaluateGMP3(t *testing.T) {
	tests := []struct {
		name   string
		status int
		exp    string
		want   tposl.GMP3
	}{
		{"active 100 days", 1, "2027-03-03", tposl.GMP3{Active: true, DaysLeft: 100, ExpDate: "2027-03-03", Status: 1}},
		{"expires today", 1, "23.11.2026", tposl.GMP3{Active: true, DaysLeft: 0, ExpDate: "2026-11-23", Status: 1}},
		{"expires today, late hour", 1, "2026-11-23 23:59:59", tposl.GMP3{Active: true, DaysLeft: 0, ExpDate: "2026-11-23", Status: 1}},
		{"expired yesterday", 1, "2026-11-22", tposl.GMP3{Active: false, DaysLeft: 0, ExpDate: "2026-11-22", Status: 1}},
		{"tomorrow via /Date/", 1, dotNet(time.Date(2026, 11, 24, 0, 0, 0, 0, trt), "+0300"), tposl.GMP3{Active: true, DaysLeft: 1, ExpDate: "2026-11-24", Status: 1}},
		{"no date", 1, "", tposl.GMP3{Active: true, DaysLeft: -1, Status: 1}},
		{"garbage date", 1, "31/31/31", tposl.GMP3{Active: true, DaysLeft: -1, ExpDate: "31/31/31", Status: 1}},
		{"status 0 with a date", 0, "2027-03-03", tposl.GMP3{Active: false, DaysLeft: 100, ExpDate: "2027-03-03", Status: 0}},
		{"status 7 raw", 7, "", tposl.GMP3{Active: false, DaysLeft: -1, Status: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok(func(r *tposl.Return) { r.LisansStatus = 1; r.GMP3Status, r.GMP3ExpDate = tt.status, tt.exp })
			if got := tposl.Evaluate(r, ours, fixedNow).GMP3; got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUnknown(t *testing.T) {
	l := tposl.Unknown("no network\nat all")
	if l.State != tposl.StateUnknown || l.Source != "none" || l.Message != "no network at all" || l.DaysLeft != -1 || l.State.Usable() {
		t.Errorf("%+v", l)
	}
	if !tposl.Licensed.Usable() || !tposl.Demo.Usable() || tposl.Expired.Usable() {
		t.Error("Usable")
	}
	codes := map[tposl.State]int{tposl.Licensed: 0, tposl.Demo: 0, tposl.Expired: 3, tposl.Inactive: 3,
		tposl.Mismatch: 3, tposl.Unregistered: 3, tposl.StateUnknown: 4, "": 4, "weird": 4}
	for s, want := range codes {
		if got := s.ExitCode(); got != want {
			t.Errorf("%q.ExitCode() = %d, want %d", s, got, want)
		}
	}
	if l.Registered() || !tposl.Evaluate(ok(nil), ours, fixedNow).Registered() || tposl.Evaluate(tposl.Return{}, ours, fixedNow).Registered() {
		t.Error("Registered")
	}
}

func TestParseDate(t *testing.T) {
	ist := trt
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-11-23", time.Date(2026, 11, 23, 0, 0, 0, 0, ist)},
		{" 2026-11-23 ", time.Date(2026, 11, 23, 0, 0, 0, 0, ist)},
		{"2026-11-23 15:04:05", time.Date(2026, 11, 23, 15, 4, 5, 0, ist)},
		{"23.11.2026", time.Date(2026, 11, 23, 0, 0, 0, 0, ist)},
		{"23.11.2026 15:04:05", time.Date(2026, 11, 23, 15, 4, 5, 0, ist)},
		{"2026-11-23T15:04:05Z", time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)},
		{"2026-11-23T15:04:05+03:00", time.Date(2026, 11, 23, 12, 4, 5, 0, time.UTC)},
		{"2026-11-23T15:04:05.5-05:00", time.Date(2026, 11, 23, 20, 4, 5, 5e8, time.UTC)},
		{"2026-11-23T15:04:05", time.Date(2026, 11, 23, 15, 4, 5, 0, ist)},
		{"/Date(0)/", time.Unix(0, 0)},
		{"/Date(1795420800000)/", time.UnixMilli(1795420800000)},
		{"/Date(1795420800000+0300)/", time.UnixMilli(1795420800000)},
		{"/Date(1795420800000-0130)/", time.UnixMilli(1795420800000)},
		{`\/Date(1795420800000)\/`, time.UnixMilli(1795420800000)},
		{"/Date(-86400000)/", time.Unix(-86400, 0)},
	}
	for _, tt := range tests {
		got, ok := tposl.ParseDate(tt.in, ist)
		if !ok || !got.Equal(tt.want) {
			t.Errorf("ParseDate(%q) = %v, %v; want %v", tt.in, got, ok, tt.want)
		}
	}
	if got, _ := tposl.ParseDate("/Date(1795420800000+0300)/", ist); got.Format("-0700") != "+0300" {
		t.Errorf("zone of /Date(ms+0300)/: %v", got)
	}
	for _, bad := range []string{
		"", " ", "yarın", "2026-13-01", "2026-02-30", "30.02.2026", "2026/11/23", "23-11-2026",
		"11/23/2026", "2026-11-23T25:00:00Z", "/Date()/", "/Date(abc)/", "/Date(1+03)/", "/Date(1+03000)/",
		"/Date(1+2500)/", "/Date(1+0360)/", "/Date(1++300)/", "/Date(99999999999999999999)/", "/Date(253402300800000)/",
		"/Date(1)", "Date(1)/", "0000-00-00", "0001-01-00", strings.Repeat("2026-11-23", 10), "2026-11-23\x00",
		"١٢٣٤-١١-٢٣", "null", "undefined", "NaN",
	} {
		if got, ok := tposl.ParseDate(bad, ist); ok {
			t.Errorf("ParseDate(%q) = %v, want false", bad, got)
		}
	}
	if _, ok := tposl.ParseDate("2026-11-23", nil); !ok {
		t.Error("nil location")
	}
}

func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"2026-11-23", "2026-11-23 15:04:05", "23.11.2026", "2026-11-23T15:04:05+03:00",
		"/Date(1795420800000)/", "/Date(1795420800000+0300)/", "/Date(-1-0000)/", `\/Date(0)\/`, "9999-12-31T23:59:59-23:59", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := tposl.ParseDate(s, trt)
		if !ok {
			if !got.IsZero() {
				t.Fatalf("false with a time %v", got)
			}
			return
		}
		if y := got.Year(); y < 1 || y > 9999 {
			t.Fatalf("ParseDate(%q) year %d", s, y)
		}
		// A parsed date can be used in a demo without trouble.
		r := tposl.Return{Status: true, Aktif: 1, DemoLisansGun: 30, DemoBasTarih: s, GMP3Status: 1, GMP3ExpDate: s}
		_ = tposl.Evaluate(r, ours, fixedNow)
	})
}
