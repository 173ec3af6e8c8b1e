package localapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/outbox"
)

// pageServer is a local API whose status combines a demo licence, a read
// device and the counts of a real outbox holding three pending records
// and one dead letter.
func pageServer(t *testing.T) *httptest.Server {
	t.Helper()
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	now := time.Now()
	started, read, checked, flushed := now.Add(-26*time.Hour), now.Add(-4*time.Minute), now.Add(-2*time.Hour), now.Add(-90*time.Second)
	status := func() localapi.Status {
		st, err := q.Stats()
		if err != nil {
			t.Error(err)
		}
		return localapi.Status{
			Registered: true, Online: false, OnlineSince: &flushed, LastFlush: &flushed, LastRegistration: &checked,
			Version: "1.4.2", StartedAt: started,
			License: license.License{State: license.Demo, DaysLeft: 20, DemoEnd: "2026-12-17", CheckedAt: checked, Source: license.SourceServer,
				Message: "demo licence: 20 days left", GMP3: license.GMP3{Active: true, DaysLeft: 100, ExpDate: "2027-03-07"}},
			Device: localapi.Device{FiscalSerial: "JI20012345", Source: "device", Port: "/dev/ttyUSB0", ReadAt: &read, Brand: "HUGIN", Model: "VIP 80 PLUS",
				Conflict: true, Conflicting: map[string]string{"device": "JI20012345", "pos": "JI20012399"}},
			Outbox: localapi.Outbox{Pending: st.Pending - st.InFlight, InFlight: st.InFlight, Dead: st.Dead,
				OldestPendingAgeS: int64(st.OldestPendingAge / time.Second), Bytes: st.Bytes},
			Warnings: []string{"api.listen 0.0.0.0:8787 is reachable from the network"},
		}
	}
	h := localapi.NewHandler(localapi.Config{
		Token: token, Queue: agent.LocalQueue(q), Status: status,
		License: func() license.License { return status().License },
	})
	srv := httptest.NewServer(contractChecked(t, h))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	// A dead letter first: a sender refuses the one record it gets.
	if _, err := q.Enqueue(ctx, outbox.Entry{Kind: outbox.KindSpecialCode, Key: "special_code:X", Payload: json.RawMessage(`{"code":"X"}`)}); err != nil {
		t.Fatal(err)
	}
	refuseAll(t, q, 1)
	for i := range 3 {
		if _, err := q.Enqueue(ctx, outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("kasa:id:", i+1), Payload: json.RawMessage(`{"id":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

type refuser struct{}

func (refuser) Send(context.Context, outbox.Item) outbox.Result {
	return outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 404: kayıt bulunamadı"}
}
func (refuser) Probe(context.Context) error { return nil }

// refuseAll runs the queue with a sender that refuses everything until
// dead items are dead letters.
func refuseAll(t *testing.T, q *outbox.Queue, dead int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx, refuser{}) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := q.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Dead >= dead {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter after 10 s: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// get fetches path without a token.
func get(t *testing.T, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// statusOf reads /v1/status with the token.
func statusOf(t *testing.T, srv *httptest.Server) localapi.Status {
	t.Helper()
	var s localapi.Status
	if err := (&localapi.Client{BaseURL: srv.URL, Token: token}).Do(context.Background(), "GET", "/v1/status", nil, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

var rowValue = regexp.MustCompile(`id="row-([a-z0-9-]+)"[^>]*data-value="(-?[0-9]+)"`)

// pageNumbers returns the data-value of every row of a rendered page.
func pageNumbers(html string) map[string]int64 {
	out := map[string]int64{}
	for _, m := range rowValue.FindAllStringSubmatch(html, -1) {
		n, _ := strconv.ParseInt(m[2], 10, 64)
		out[m[1]] = n
	}
	return out
}

// checkPageMatchesStatus compares the numbers a page shows with
// /v1/status read just before and just after the page (ages grow).
func checkPageMatchesStatus(t *testing.T, html string, before, after localapi.Status) {
	t.Helper()
	got := pageNumbers(html)
	nums := func(s localapi.Status) map[string]int64 {
		return map[string]int64{
			"license": int64(s.License.DaysLeft), "gmp3": int64(s.License.GMP3.DaysLeft),
			"pending": int64(s.Outbox.Pending + s.Outbox.InFlight), "dead": int64(s.Outbox.Dead), "oldest": s.Outbox.OldestPendingAgeS,
		}
	}
	lo, hi := nums(before), nums(after)
	for k, v := range lo {
		if g, ok := got[k]; !ok || g < min(v, hi[k]) || g > max(v, hi[k]) {
			t.Errorf("page row %s shows %d (present %v), /v1/status says %d..%d", k, g, ok, v, hi[k])
		}
	}
	if !strings.Contains(html, before.Device.FiscalSerial) || !strings.Contains(html, before.Version) {
		t.Errorf("page lacks the fiscal serial %s or the version %s", before.Device.FiscalSerial, before.Version)
	}
}

func TestStatusPage(t *testing.T) {
	srv := pageServer(t)
	s := statusOf(t, srv)
	if s.Outbox.Pending != 3 || s.Outbox.Dead != 1 {
		t.Fatalf("fixture: status outbox %+v, want 3 pending and 1 dead", s.Outbox)
	}
	tests := []struct {
		name, path string
		header     []string
		lang       string
		words      []string
	}{
		{"default is Turkish", "/", nil, "tr", []string{"Demo lisans: 20 gün kaldı", "17.12.2026", "Bekleyen kayıtlar", "3 bekliyor", "Ödüyo 1 kaydı reddetti", "çevrimdışı", "yazarkasadan okundu", "GMP3 modülü", "100 gün kaldı", "Son başarılı gönderim", "English",
			"Uyuşmazlık", "kaynaklar mali seri noda uyuşmuyor: JI20012345 (yazarkasadan okundu) / JI20012399 (POS programı bildirdi)",
			"api.listen 0.0.0.0:8787 yalnızca bu bilgisayara açık değil: yerel API ağdan erişilebilir"}},
		{"browser prefers English", "/", []string{"Accept-Language", "en-US,en;q=0.9,tr;q=0.8"}, "en", []string{"Demo licence: 20 days left", "Records waiting", "3 waiting", "1 refused by Ödüyo", "offline", "read from the cash register", "Türkçe",
			"the sources disagree on the fiscal serial: JI20012345 (read from the cash register) vs JI20012399 (reported by the POS program)",
			"api.listen 0.0.0.0:8787 is reachable from the network"}},
		{"browser prefers Turkish", "/", []string{"Accept-Language", "tr-TR,tr;q=0.9,en;q=0.8"}, "tr", []string{"Kasa ajanı"}},
		{"query wins over the browser", "/?lang=en", []string{"Accept-Language", "tr"}, "en", []string{"Till agent"}},
		{"query tr", "/?lang=tr", []string{"Accept-Language", "en"}, "tr", []string{"Yazarkasa"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := statusOf(t, srv)
			resp, html := get(t, srv.URL+tt.path, tt.header...)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html; charset=utf-8") {
				t.Fatalf("GET %s without a token: %d %s", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if !strings.Contains(html, `<html lang="`+tt.lang+`">`) || resp.Header.Get("Content-Language") != tt.lang {
				t.Errorf("language: want %s", tt.lang)
			}
			for _, w := range tt.words {
				if !strings.Contains(html, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			checkPageMatchesStatus(t, html, s, statusOf(t, srv))
			if len(html) >= 100<<10 {
				t.Errorf("page is %d bytes, want < 100 KB", len(html))
			}
			// Self-contained and read-only: no script, no external
			// reference, no form; it reloads itself.
			for _, bad := range []string{"<script", "src=", "http://", "https://", "<form", "<link", "@import", "url("} {
				if strings.Contains(html, bad) {
					t.Errorf("page contains %q", bad)
				}
			}
			if !strings.Contains(html, `<meta http-equiv="refresh" content="15">`) {
				t.Error("page does not refresh itself")
			}
			if strings.Contains(html, token) {
				t.Error("page shows the API token")
			}
		})
	}
	// The page changes nothing and other methods need the token.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST / without a token: %d, want 401", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodHead, srv.URL+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("HEAD /: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Other paths still need the token.
	if resp, _ := get(t, srv.URL+"/v1/status"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/status without a token: %d, want 401", resp.StatusCode)
	}
}

// TestStatusPagePOSReport: with the identity from the POS's report the
// page names the port the POS reported, how old the report is, and that
// the agent leaves the device to the POS.
func TestStatusPagePOSReport(t *testing.T) {
	at := time.Now().Add(-3 * time.Hour)
	age := int64(3 * 3600)
	status := func() localapi.Status {
		return localapi.Status{Version: "x", StartedAt: at, License: license.License{State: license.Licensed, CheckedAt: at, Source: license.SourceServer},
			Device: localapi.Device{FiscalSerial: "JI20012345", Source: "pos", Port: "COM3", ReadAt: &at,
				NotOpened: "the POS's report is younger than 7d: the agent does not open the device",
				Sources:   map[string]localapi.DeviceSource{"pos": {FiscalSerial: "JI20012345", Port: "COM3", At: &at, AgeS: &age, Fresh: true}}}}
	}
	srv := httptest.NewServer(contractChecked(t, localapi.NewHandler(localapi.Config{Token: token, Status: status,
		License: func() license.License { return status().License }})))
	defer srv.Close()
	for lang, words := range map[string][]string{
		"en": {"on COM3", " ago", "the device is left to the POS (fresh report)"},
		"tr": {"port COM3", " önce", "bırakıldı (güncel bildirim)"},
	} {
		_, html := get(t, srv.URL+"/?lang="+lang)
		for _, w := range words {
			if !strings.Contains(html, w) {
				t.Errorf("%s page lacks %q", lang, w)
			}
		}
	}
}
