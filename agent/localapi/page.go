package localapi

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
	"sort"
	"time"

	"github.com/tposagent/tposagent/internal/i18n"
)

// The status page for store staff at GET /: one server-rendered HTML page
// with its style inline (no script, no external asset, so it works
// offline), Turkish unless the browser prefers English or ?lang=en asks
// for it. It shows what /v1/status says, in words, and reloads itself
// every PageRefresh. It needs no token: it shows no secret and changes
// nothing.

// PageRefresh is how often the status page reloads itself.
const PageRefresh = 15 * time.Second

//go:embed page.html
var pageHTML string

var pageTmpl = template.Must(template.New("page").Parse(pageHTML))

// pageRow is one fact on the page: a label, the value in words, and a
// state for its colour ("ok", "warn", "bad" or "").
type pageRow struct {
	ID, Label, Value, Detail, State string
	// Num is the number the row shows, for machines (data-value).
	Num *int64
}

type pageData struct {
	Lang, Title, Headline, HeadState string
	Rows                             []pageRow
	Warnings                         []string
	Updated, Footer, Other, OtherURL string
	Refresh                          int
}

// pageLang chooses the page's language: ?lang= first, then the browser.
func pageLang(r *http.Request) i18n.Lang {
	if l, ok := i18n.Parse(r.URL.Query().Get("lang")); ok {
		return l
	}
	return i18n.FromAcceptLanguage(r.Header.Get("Accept-Language"))
}

func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	l := pageLang(r)
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, buildPage(l, h.cfg.Status(), time.Now())); err != nil {
		h.log.Error("render status page", "err", err)
		http.Error(w, "cannot render the status page", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Language", string(l))
	hd.Set("Vary", "Accept-Language")
	// Nothing outside the page may be loaded, framed or posted to.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

func num(n int64) *int64 { return &n }

// buildPage turns a status into the page's rows.
func buildPage(l i18n.Lang, s Status, now time.Time) pageData {
	d := pageData{Lang: string(l), Refresh: int(PageRefresh / time.Second)}
	d.Title = l.T("Till agent", "Kasa ajanı")
	d.Updated = l.F("Updated %s; this page refreshes every %d seconds.", "Güncellendi: %s; sayfa %d saniyede bir yenilenir.", l.Time(now), d.Refresh)
	if l == i18n.TR {
		d.Other, d.OtherURL = "English", "/?lang=en"
	} else {
		d.Other, d.OtherURL = "Türkçe", "/?lang=tr"
	}
	ago := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return l.T("never", "hiç")
		}
		return l.Time(*t) + " (" + l.Ago(now.Sub(*t)) + ")"
	}

	// Licence.
	lic := s.License
	row := pageRow{ID: "license", Label: l.T("Licence", "Lisans"), Value: l.State(string(lic.State))}
	switch lic.State {
	case "licensed":
		row.State = "ok"
	case "demo":
		row.State = "warn"
		if lic.DaysLeft >= 0 {
			row.Value += ": " + l.F("%s left", "%s kaldı", l.Days(lic.DaysLeft))
			row.Num = num(int64(lic.DaysLeft))
		}
		if lic.DemoEnd != "" {
			row.Value += l.F(" (until %s)", " (%s tarihine kadar)", l.Date(lic.DemoEnd))
		}
	default:
		row.State = "bad"
	}
	if !lic.CheckedAt.IsZero() {
		row.Detail = l.F("checked %s, %s", "kontrol: %s, %s", ago(&lic.CheckedAt), l.Source(lic.Source))
	} else if lic.Message != "" {
		row.Detail = lic.Message
	}
	d.HeadState = row.State
	d.Headline = row.Value
	d.Rows = append(d.Rows, row)

	g := lic.GMP3
	if g.Active || g.ExpDate != "" {
		row := pageRow{ID: "gmp3", Label: l.T("GMP3 module", "GMP3 modülü")}
		if g.Active {
			row.Value, row.State = l.T("active", "etkin"), "ok"
		} else {
			row.Value, row.State = l.T("not active", "etkin değil"), "bad"
		}
		if g.DaysLeft >= 0 {
			row.Value += ", " + l.F("%s left", "%s kaldı", l.Days(g.DaysLeft))
			row.Num = num(int64(g.DaysLeft))
			if g.Active && g.DaysLeft <= 15 {
				row.State = "warn"
			}
		}
		if g.ExpDate != "" {
			row.Value += l.F(" (until %s)", " (%s tarihine kadar)", l.Date(g.ExpDate))
		}
		d.Rows = append(d.Rows, row)
	}

	// Device identity.
	dev := s.Device
	row = pageRow{ID: "device", Label: l.T("Cash register", "Yazarkasa")}
	if dev.FiscalSerial == "" {
		row.Value, row.State = l.T("no fiscal serial known", "mali seri no bilinmiyor"), "bad"
	} else {
		row.Value, row.State = dev.FiscalSerial, "ok"
		row.Detail = l.Source(dev.Source)
		if p := dev.Sources["pos"].Port; dev.Source == "pos" && p != "" {
			row.Detail += l.F(" on %s", ", port %s", p)
		} else if dev.Port != "" && dev.Source != "config" && dev.Source != "pos" {
			row.Detail += l.F(" on %s", ", port %s", dev.Port)
		}
		if dev.ReadAt != nil {
			row.Detail += ", " + l.Ago(now.Sub(*dev.ReadAt))
		}
		if dev.Brand != "" || dev.Model != "" {
			row.Value += " (" + dev.Brand + " " + dev.Model + ")"
		}
	}
	if dev.NotOpened != "" {
		row.Detail += "; " + l.T("the device is left to the POS (fresh report)", "cihaz POS'a bırakıldı (güncel bildirim)")
	}
	if dev.Error != "" {
		row.Detail += "; " + l.T("device: ", "cihaz: ") + dev.Error
		if row.State == "ok" {
			row.State = "warn"
		}
	}
	d.Rows = append(d.Rows, row)
	if c := deviceConflict(s.Device, l); c != "" {
		d.Rows = append(d.Rows, pageRow{ID: "device-conflict", Label: l.T("Conflict", "Uyuşmazlık"), Value: c, State: "bad"})
	}

	// Records.
	o := s.Outbox
	waiting := int64(o.Pending + o.InFlight)
	row = pageRow{ID: "pending", Label: l.T("Records waiting", "Bekleyen kayıtlar"), Num: num(waiting), State: "ok"}
	row.Value = l.F("%d waiting", "%d bekliyor", waiting)
	if o.OldestPendingAgeS > 3600 {
		row.State = "warn"
	}
	d.Rows = append(d.Rows, row)
	row = pageRow{ID: "dead", Label: l.T("Records refused", "Reddedilen kayıtlar"), Num: num(int64(o.Dead)), State: "ok"}
	row.Value = l.F("%d refused by Ödüyo", "Ödüyo %d kaydı reddetti", o.Dead)
	if o.Dead > 0 {
		row.State = "bad"
		row.Detail = l.T("see: tposagent outbox dead", "bakınız: tposagent outbox dead")
	}
	d.Rows = append(d.Rows, row)
	row = pageRow{ID: "oldest", Label: l.T("Oldest waiting", "En eski bekleyen"), Num: num(o.OldestPendingAgeS),
		Value: l.Duration(time.Duration(o.OldestPendingAgeS) * time.Second)}
	if waiting == 0 {
		row.Value = l.T("nothing waits", "bekleyen yok")
	}
	d.Rows = append(d.Rows, row)

	// Connection.
	row = pageRow{ID: "online", Label: l.T("Ödüyo connection", "Ödüyo bağlantısı")}
	if s.Online {
		row.Value, row.State = l.T("online", "çevrimiçi"), "ok"
	} else {
		row.Value, row.State = l.T("offline: records are kept and sent later", "çevrimdışı: kayıtlar saklanıyor, sonra gönderilecek"), "warn"
	}
	if s.OnlineSince != nil {
		row.Detail = l.F("since %s", "%s tarihinden beri", ago(s.OnlineSince))
	}
	d.Rows = append(d.Rows, row)
	d.Rows = append(d.Rows, pageRow{ID: "last-flush", Label: l.T("Last successful send", "Son başarılı gönderim"), Value: ago(s.LastFlush)})
	reg := pageRow{ID: "registered", Label: l.T("Licence server registration", "Lisans sunucusu kaydı"), Value: ago(s.LastRegistration)}
	if s.Registered {
		reg.State = "ok"
	} else {
		reg.State = "warn"
		reg.Value = l.T("not registered", "kayıt yapılmadı") + "; " + l.T("last: ", "son: ") + ago(s.LastRegistration)
	}
	d.Rows = append(d.Rows, reg)
	d.Rows = append(d.Rows, pageRow{ID: "version", Label: l.T("Agent version", "Ajan sürümü"), Value: s.Version,
		Detail: l.F("running since %s", "%s tarihinden beri çalışıyor", ago(&s.StartedAt))})
	for _, w := range s.Warnings {
		d.Warnings = append(d.Warnings, l.Warning(w))
	}
	d.Footer = l.T("Read-only page of the till agent. The POS program uses the local API; store IT: tposagent status, tposagent doctor.",
		"Kasa ajanının salt okunur sayfası. POS programı yerel API'yi kullanır; mağaza BT: tposagent status, tposagent doctor.")
	return d
}

// deviceConflict describes a disagreement of the identity sources: each
// source's fiscal serial, in words.
func deviceConflict(d Device, l i18n.Lang) string {
	if !d.Conflict {
		return ""
	}
	names := make([]string, 0, len(d.Conflicting))
	for k := range d.Conflicting {
		names = append(names, k)
	}
	sort.Strings(names)
	out := l.T("the sources disagree on the fiscal serial", "kaynaklar mali seri noda uyuşmuyor")
	for i, k := range names {
		if i == 0 {
			out += ": "
		} else {
			out += l.T(" vs ", " / ")
		}
		out += d.Conflicting[k] + " (" + l.Source(k) + ")"
	}
	return out
}

// public serves the two resources that need no token: GET / and
// GET /v1/openapi.json (HEAD too). It reports whether it answered.
func (h *handler) public(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case "/":
		h.page(w, r)
	case "/v1/openapi.json":
		serveOpenAPI(w, r)
	case "/v1/hello": // the proof of the token, for a client yet to send it (guard.go)
		h.hello(w, r)
	default:
		return false
	}
	return true
}
