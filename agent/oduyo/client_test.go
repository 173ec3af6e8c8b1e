package oduyo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/internal/testrig"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a fake server, a client for it, and everything the secret
// scan needs: the log and every error produced.
type harness struct {
	srv  *oduyotest.Server
	c    *Client
	logs *testrig.Buffer

	mu   sync.Mutex
	errs []error
}

var (
	scanMu    sync.Mutex
	scanned   []string // log output and error strings of every harness
	scanFakes []*oduyotest.Server
)

func newHarness(t *testing.T, mod func(*Config), opts ...oduyotest.Option) *harness {
	t.Helper()
	srv := oduyotest.NewServer(opts...)
	t.Cleanup(srv.Close)
	logs := &testrig.Buffer{}
	cfg := Config{
		BaseURL:  srv.URL(),
		APIKey:   srv.APIKey,
		Username: srv.Username,
		Password: srv.Password,
		Timeout:  5 * time.Second,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{srv: srv, c: c, logs: logs}
	t.Cleanup(func() {
		scanMu.Lock()
		defer scanMu.Unlock()
		scanned = append(scanned, logs.String())
		h.mu.Lock()
		for _, e := range h.errs {
			scanned = append(scanned, e.Error(), fmt.Sprintf("%+v", e))
		}
		h.mu.Unlock()
		scanFakes = append(scanFakes, srv)
	})
	return h
}

func (h *harness) keep(err error) error {
	if err != nil {
		h.mu.Lock()
		h.errs = append(h.errs, err)
		h.mu.Unlock()
	}
	return err
}

func (h *harness) kasa(t *testing.T, key, in string) error {
	t.Helper()
	col, _, err := records.NormalizeKasa([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return h.keep(h.c.UpdateKasa(context.Background(), key, col))
}

// parked reports whether n callers wait for the login in flight.
func (h *harness) parked(n int) bool {
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	return h.c.waiting == n
}

func wantClass(t *testing.T, err error, class Class, status int) *Error {
	t.Helper()
	var oe *Error
	if !errors.As(err, &oe) {
		t.Fatalf("err = %v, want an *Error", err)
	}
	if c, _ := Classify(err); c != class || oe.StatusCode != status {
		t.Fatalf("err = %v: class %v status %d, want %v %d", err, c, oe.StatusCode, class, status)
	}
	return oe
}

func TestDeliverKasaAndSpecialCode(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.kasa(t, "k1", `{"id":2,"integration_id":"2","description":"Kadıköy ŞUBE ğüşıöçİ","balance":"1.260,50"}`); err != nil {
		t.Fatal(err)
	}
	col, _, err := records.NormalizeSpecialCode(specExample(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.keep(h.c.CreateSpecialCode(context.Background(), "s1", col)); err != nil {
		t.Fatal(err)
	}
	d := h.srv.Delivered()
	if len(d) != 2 || h.srv.Logins() != 1 || h.srv.Requests() != 2 {
		t.Fatalf("delivered %d, logins %d, requests %d", len(d), h.srv.Logins(), h.srv.Requests())
	}
	if d[0].Kind != oduyotest.KindKasa || d[0].IdempotencyKey != "k1" || d[0].ID != "2" ||
		!strings.Contains(string(d[0].Column), `"description":"Kadıköy ŞUBE ğüşıöçİ"`) ||
		!strings.Contains(string(d[0].Column), `"balance":"1260.50"`) {
		t.Errorf("kasa delivery %+v %s", d[0], d[0].Column)
	}
	if d[1].Kind != oduyotest.KindSpecialCode || d[1].IdempotencyKey != "s1" || d[1].IntegrationID != "1111111" || !bytes.Equal(d[1].Column, col) {
		t.Errorf("special code delivery %+v", d[1])
	}
}

// The exact headers and body, seen by a plain handler.
func TestWireFormat(t *testing.T) {
	const sid = "SESS-0123456789abcdef"
	var got struct {
		login                       http.Header
		form                        map[string]string
		rec                         http.Header
		path, body, method, reqPath string
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == LoginPath {
			_ = r.ParseForm()
			got.login = r.Header.Clone()
			got.form = map[string]string{"username": r.PostForm.Get("username"), "password": r.PostForm.Get("password"), "oduyo_api_key": r.PostForm.Get("oduyo_api_key")}
			got.method = r.Method
			fmt.Fprintf(w, `{"status":true,"data":{"SESSION_ID":%q}}`, sid)
			return
		}
		got.rec = r.Header.Clone()
		got.reqPath = r.URL.Path
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		got.body = b.String()
		fmt.Fprint(w, `{"status": true, "data": "Guncelleme islemi Basarili"}`)
	}))
	defer ts.Close()
	c, err := New(Config{BaseURL: ts.URL + "/", APIKey: "K-123", Username: "kasa", Password: "P&ss=ş"})
	if err != nil {
		t.Fatal(err)
	}
	col := json.RawMessage(`{"id":2,"note":"ş <&>"}`)
	if err := c.UpdateKasa(context.Background(), "idem-1", col); err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodPost || got.login.Get("Content-Type") != "application/x-www-form-urlencoded" ||
		got.form["username"] != "kasa" || got.form["password"] != "P&ss=ş" || got.form["oduyo_api_key"] != "K-123" {
		t.Errorf("login %s %v %v", got.method, got.login, got.form)
	}
	if got.reqPath != KasaUpdatePath || got.rec.Get("Apikey") != "K-123" || got.rec.Get("Authorization") != sid ||
		got.rec.Get("Idempotency-Key") != "idem-1" || got.rec.Get("Content-Type") != "application/json" {
		t.Errorf("record request %s %v", got.reqPath, got.rec)
	}
	if got.body != `{"column":{"id":2,"note":"ş <&>"}}` {
		t.Errorf("body %s", got.body)
	}
	if err := c.CreateSpecialCode(context.Background(), "", json.RawMessage(`{"code":"X"}`)); err != nil || got.reqPath != SpecialCodePath || got.rec.Get("Idempotency-Key") != "" {
		t.Errorf("special code: %v %s %v", err, got.reqPath, got.rec)
	}
	err = c.UpdateKasa(context.Background(), "k", json.RawMessage(`[1]`))
	wantClass(t, err, Permanent, 0)
}

func TestFaults(t *testing.T) {
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		fault  oduyotest.Fault
		n      int
		class  Class
		status int
		after  time.Duration
	}{
		{"500", oduyotest.Fault{Status: 500}, 1, Transient, 500, 0},
		{"502 html", oduyotest.Fault{Status: 502, HTML: true}, 1, Transient, 502, 0},
		{"503 retry-after seconds", oduyotest.Fault{Status: 503, RetryAfter: "12"}, 1, Transient, 503, 12 * time.Second},
		{"503 retry-after date", oduyotest.Fault{Status: 503, RetryAfter: now.Add(90 * time.Second).Format(http.TimeFormat)}, 1, Transient, 503, 90 * time.Second},
		{"504", oduyotest.Fault{Status: 504}, 1, Transient, 504, 0},
		{"429 retry-after", oduyotest.Fault{Status: 429, RetryAfter: "30"}, 1, Transient, 429, 30 * time.Second},
		{"429 retry-after date", oduyotest.Fault{Status: 429, RetryAfter: now.Add(time.Minute).Format(http.TimeFormat)}, 1, Transient, 429, time.Minute},
		{"408", oduyotest.Fault{Status: 408}, 1, Transient, 408, 0},
		{"html 200", oduyotest.Fault{HTML: true}, 1, Transient, 200, 0},
		{"malformed json 200", oduyotest.Fault{Malformed: true}, 1, Transient, 200, 0},
		{"malformed json 500", oduyotest.Fault{Status: 500, Malformed: true}, 1, Transient, 500, 0},
		// The transport may replay a request with an Idempotency-Key once
		// on a reused connection, so the reset is scripted twice.
		{"reset", oduyotest.Fault{Reset: true}, 2, Transient, 0, 0},
		{"400", oduyotest.Fault{Status: 400}, 1, Permanent, 400, 0},
		{"404", oduyotest.Fault{Status: 404}, 1, Permanent, 404, 0},
		{"422", oduyotest.Fault{Status: 422}, 1, Permanent, 422, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Now = func() time.Time { return now } })
			if err := h.c.Login(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.srv.FailNext(tc.n, tc.fault)
			err := h.kasa(t, "k", `{"id":1}`)
			oe := wantClass(t, err, tc.class, tc.status)
			if oe.RetryAfter != tc.after {
				t.Errorf("RetryAfter = %v, want %v", oe.RetryAfter, tc.after)
			}
			if len(h.srv.Delivered()) != 0 {
				t.Error("a failed request was recorded as delivered")
			}
			// The next call goes through.
			h.srv.ClearFaults()
			if err := h.kasa(t, "k", `{"id":1}`); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
			if h.srv.Logins() != 1 {
				t.Errorf("logins = %d", h.srv.Logins())
			}
		})
	}
}

func TestSlowServerTimesOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Timeout = 200 * time.Millisecond })
	if err := h.c.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.srv.FailNext(1, oduyotest.Fault{Delay: 30 * time.Second})
	start := time.Now()
	err := h.kasa(t, "k", `{"id":1}`)
	wantClass(t, err, Transient, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want a deadline", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v", el)
	}
	// A slow answer within the timeout is fine.
	h.srv.FailNext(1, oduyotest.Fault{Delay: 20 * time.Millisecond})
	if err := h.kasa(t, "k", `{"id":1}`); err != nil {
		t.Fatal(err)
	}
}

func TestCallerCancel(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.FailNextLogin(1, oduyotest.Fault{Delay: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for h.srv.Logins() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	col, _, _ := records.NormalizeKasa([]byte(`{"id":1}`))
	err := h.keep(h.c.UpdateKasa(ctx, "k", col))
	wantClass(t, err, Transient, 0)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

// When the caller that is logging in gives up, a caller waiting for that
// login logs in itself instead of inheriting the cancellation.
func TestWaiterSurvivesLeaderCancel(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.FailNextLogin(1, oduyotest.Fault{Delay: 30 * time.Second})
	leaderCtx, cancel := context.WithCancel(context.Background())
	leaderDone := make(chan error, 1)
	go func() { leaderDone <- h.keep(h.c.Login(leaderCtx)) }()
	deadline := time.Now().Add(5 * time.Second)
	for h.srv.Logins() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling the fake, not waiting for a timer
	}
	waiterDone := make(chan error, 1)
	go func() { waiterDone <- h.keep(h.kasa(t, "w", `{"id":1}`)) }()
	for !h.parked(1) {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never waited for the login in flight")
		}
		time.Sleep(time.Millisecond)
	}
	if n := h.srv.Logins(); n != 1 {
		t.Fatalf("logins = %d", n)
	}
	cancel()
	if err := <-leaderDone; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: %v", err)
	}
	if err := <-waiterDone; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if n := h.srv.Logins(); n != 2 || len(h.srv.Delivered()) != 1 {
		t.Errorf("logins %d delivered %d", n, len(h.srv.Delivered()))
	}
}

func TestStatusFalseIsPermanent(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.Reject("BAD-1", "77")
	err := h.kasa(t, "k1", `{"integration_id":"BAD-1"}`)
	oe := wantClass(t, err, Permanent, 404)
	if !strings.Contains(oe.Error(), `"status": false`) {
		t.Errorf("err = %v", err)
	}
	wantClass(t, h.kasa(t, "k2", `{"id":77}`), Permanent, 404)
	col, _, _ := records.NormalizeSpecialCode([]byte(`{"integration_id":"BAD-1","code":"X"}`))
	wantClass(t, h.keep(h.c.CreateSpecialCode(context.Background(), "s", col)), Permanent, 404)
	// Other records are not affected.
	if err := h.kasa(t, "k3", `{"integration_id":"GOOD"}`); err != nil {
		t.Fatal(err)
	}
	if d := h.srv.Delivered(); len(d) != 1 || d[0].IntegrationID != "GOOD" {
		t.Errorf("delivered %+v", d)
	}
}

// Only Ödüyo can accept or reject a record: success is 200/201/202 with a
// JSON boolean "status": true; a rejection is Ödüyo's JSON with false.
// Anything else is not Ödüyo's answer and leaves the record waiting.
func TestOnlyOduyoCanReject(t *testing.T) {
	type answer struct {
		status   int
		location string
		body     string
	}
	const html = "<!doctype html><html><title>Giriş</title><p>Wi-Fi portal</p></html>"
	tests := []struct {
		name  string
		ans   answer
		ok    bool
		class Class
	}{
		{"200 status true", answer{200, "", `{"status": true, "data": "Guncelleme islemi Basarili"}`}, true, 0},
		{"201 status true", answer{201, "", `{"status":true}`}, true, 0},
		{"202 status true", answer{202, "", `{"status":true}`}, true, 0},
		{"200 status false", answer{200, "", `{"status":false,"message":"Kayıt bulunamadı"}`}, false, Permanent},
		{"404 status false", answer{404, "", `{"status":false}`}, false, Permanent},
		{"400 status false", answer{400, "", `{"status":false,"message":"eksik alan"}`}, false, Permanent},
		{"301 redirect", answer{301, "http://portal.example/login", ""}, false, Transient},
		{"302 redirect", answer{302, "http://portal.example/login", ""}, false, Transient},
		{"307 redirect", answer{307, "http://portal.example/login", ""}, false, Transient},
		{"200 html", answer{200, "", html}, false, Transient},
		{"404 html", answer{404, "", html}, false, Transient},
		{"403 html", answer{403, "", html}, false, Transient},
		{"400 json without status", answer{400, "", `{"error":"bad request"}`}, false, Transient},
		{"200 json without status", answer{200, "", `{"data":"ok"}`}, false, Transient},
		{`200 "status":"true"`, answer{200, "", `{"status":"true"}`}, false, Transient},
		{`200 "status":1`, answer{200, "", `{"status":1}`}, false, Transient},
		{`200 "status":"hayır"`, answer{200, "", `{"status":"hayır"}`}, false, Transient},
		{"204 no body", answer{204, "", ""}, false, Transient},
		{"203 status true", answer{203, "", `{"status":true}`}, false, Transient},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == LoginPath {
					fmt.Fprint(w, `{"data":"`+tok+`"}`)
					return
				}
				if tc.ans.location != "" {
					w.Header().Set("Location", tc.ans.location)
				}
				w.WriteHeader(tc.ans.status)
				fmt.Fprint(w, tc.ans.body)
			}))
			defer ts.Close()
			c, err := New(Config{BaseURL: ts.URL, APIKey: "a-key", Username: "u", Password: "pw-secret"})
			if err != nil {
				t.Fatal(err)
			}
			err = c.UpdateKasa(context.Background(), "k", json.RawMessage(`{"id":1}`))
			if tc.ok {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			oe := wantClass(t, err, tc.class, tc.ans.status)
			if foreign := tc.class == Transient; oe.Foreign != foreign {
				t.Errorf("Foreign = %v, want %v (%v)", oe.Foreign, foreign, err)
			}
			if strings.Contains(tc.ans.body, "Kayıt") && !strings.Contains(oe.Msg, "Kayıt bulunamadı") {
				t.Errorf("server message lost: %v", err)
			}
			if tc.ans.location != "" && !strings.Contains(oe.Msg, "portal.example") {
				t.Errorf("redirect target not named: %v", err)
			}
		})
	}
}

// A redirect is never followed, and at login it is not a refusal of the
// credentials: the record waits.
func TestRedirectNotFollowed(t *testing.T) {
	var hits atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "https://elsewhere.example/", http.StatusMovedPermanently)
	}))
	defer ts.Close()
	c, err := New(Config{BaseURL: ts.URL, APIKey: "a-key", Username: "u", Password: "pw-secret"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Login(context.Background())
	oe := wantClass(t, err, Transient, 301)
	if !strings.Contains(oe.Msg, "elsewhere.example") || !oe.Foreign || hits.Load() != 1 {
		t.Errorf("err = %v, hits %d", err, hits.Load())
	}
}

// The probe counts only Ödüyo's answers: a captive portal that answers
// every path with a page or a redirect is not "online".
func TestProbeChecksTheAnswerIsOduyos(t *testing.T) {
	portal := func(redirect bool) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if redirect {
				http.Redirect(w, r, "http://portal.example/", http.StatusFound)
				return
			}
			fmt.Fprint(w, "<html><body>Lütfen giriş yapın</body></html>")
		}))
	}
	for _, redirect := range []bool{false, true} {
		ts := portal(redirect)
		c, err := New(Config{BaseURL: ts.URL, APIKey: "a-key", Username: "u", Password: "pw-secret"})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Probe(context.Background())
		ts.Close()
		if c, _ := Classify(err); err == nil || c != Transient {
			t.Errorf("captive portal (redirect %v): probe = %v, want a transient error", redirect, err)
		}
	}
	// A 200 that is not Ödüyo's login answer (a portal's or a gateway's):
	// no session id and no JSON status, so it says nothing about the
	// credentials and the server is not reachable as Ödüyo.
	for _, body := range []string{"", "Lütfen koşulları kabul edin", `["ok"]`, `{"error":"gateway"}`} {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, body)
		}))
		c, err := New(Config{BaseURL: ts.URL, APIKey: "a-key", Username: "u", Password: "pw-secret"})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Probe(context.Background())
		ts.Close()
		if cl, _ := Classify(err); err == nil || cl != Transient {
			t.Errorf("a 200 login answer %q: probe = %v, want a transient error", body, err)
		}
	}
	// A server that answers the list call with a page after a good login.
	h := newHarness(t, nil)
	h.srv.FailNextList(1, oduyotest.Fault{HTML: true})
	if err := h.keep(h.c.Probe(context.Background())); err == nil {
		t.Error("probe accepted an html answer to the list call")
	}
	// The real thing answers.
	if err := h.keep(h.c.Probe(context.Background())); err != nil {
		t.Fatal(err)
	}
	if h.srv.Lists() != 2 || h.srv.Logins() != 1 {
		t.Errorf("lists %d logins %d", h.srv.Lists(), h.srv.Logins())
	}
	// Ödüyo refusing the credentials is Ödüyo answering.
	bad := newHarness(t, func(c *Config) { c.Password = "wrong-password-value" })
	if err := bad.keep(bad.c.Probe(context.Background())); err != nil {
		t.Errorf("probe with refused credentials: %v, want reachable", err)
	}
}

func TestLoginStyles(t *testing.T) {
	for _, st := range []oduyotest.LoginStyle{oduyotest.LoginJSONData, oduyotest.LoginJSONSessionID, oduyotest.LoginJSONUpper,
		oduyotest.LoginJSONToken, oduyotest.LoginJSONNested, oduyotest.LoginBareToken} {
		h := newHarness(t, nil, oduyotest.WithLoginStyle(st))
		if err := h.kasa(t, "k", `{"id":1}`); err != nil {
			t.Errorf("style %d: %v", st, err)
		}
	}
}

func TestLoginFailures(t *testing.T) {
	t.Run("wrong password", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.Password = "wrong-password-value" })
		oe := wantClass(t, h.kasa(t, "k", `{"id":1}`), Auth, 401)
		if !strings.Contains(oe.Msg, "credentials refused") || !strings.Contains(oe.Msg, "Kullanıcı adı veya şifre hatalı") {
			t.Errorf("err = %v", oe)
		}
		if h.srv.Requests() != 0 {
			t.Error("a record was sent without a session")
		}
	})
	t.Run("login 503", func(t *testing.T) {
		h := newHarness(t, nil)
		h.srv.FailNextLogin(1, oduyotest.Fault{Status: 503, RetryAfter: "5"})
		oe := wantClass(t, h.keep(h.c.Login(context.Background())), Transient, 503)
		if oe.RetryAfter != 5*time.Second {
			t.Errorf("RetryAfter = %v", oe.RetryAfter)
		}
		if err := h.keep(h.c.Login(context.Background())); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("login html", func(t *testing.T) {
		h := newHarness(t, nil)
		h.srv.FailNextLogin(1, oduyotest.Fault{HTML: true})
		wantClass(t, h.keep(h.c.Login(context.Background())), Transient, 200)
	})
	t.Run("login malformed", func(t *testing.T) {
		h := newHarness(t, nil)
		h.srv.FailNextLogin(1, oduyotest.Fault{Malformed: true})
		wantClass(t, h.keep(h.c.Login(context.Background())), Transient, 200)
	})
	t.Run("login 404", func(t *testing.T) {
		h := newHarness(t, nil)
		h.srv.FailNextLogin(1, oduyotest.Fault{Status: 404})
		oe := wantClass(t, h.keep(h.c.Login(context.Background())), Auth, 404)
		if !strings.Contains(oe.Msg, "base_url") {
			t.Errorf("err = %v", oe)
		}
	})
}

func TestSessionExpiryRelogin(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.ExpireSessionsAfter(2)
	for i := range 5 {
		if err := h.kasa(t, fmt.Sprint("k", i), fmt.Sprintf(`{"id":%d}`, i+1)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	// Calls 1-2 on session 1, 3-4 on session 2 (after a 401), 5 on session 3.
	if h.srv.Logins() != 3 || len(h.srv.Delivered()) != 5 || h.srv.Requests() != 7 {
		t.Errorf("logins %d delivered %d requests %d", h.srv.Logins(), len(h.srv.Delivered()), h.srv.Requests())
	}
	if !strings.Contains(h.logs.String(), "session rejected") {
		t.Error("the re-login was not logged")
	}
}

func TestUnauthorizedTwiceIsAuth(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.FailNext(2, oduyotest.Fault{Status: 401})
	wantClass(t, h.kasa(t, "k", `{"id":1}`), Auth, 401)
	if h.srv.Logins() != 2 || h.srv.Requests() != 2 {
		t.Errorf("logins %d requests %d: want exactly one re-login and retry", h.srv.Logins(), h.srv.Requests())
	}
	h.srv.FailNext(1, oduyotest.Fault{Status: 403})
	if err := h.kasa(t, "k", `{"id":1}`); err != nil {
		t.Fatalf("a single 403 must be healed by a re-login: %v", err)
	}
}

func TestConcurrentCallersShareOneLogin(t *testing.T) {
	h := newHarness(t, nil)
	// A slow login makes sure the callers overlap.
	h.srv.FailNextLogin(1, oduyotest.Fault{Delay: 100 * time.Millisecond})
	col, _, _ := records.NormalizeKasa([]byte(`{"id":1}`))
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 100)
	for i := range 50 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			errs <- h.keep(h.c.UpdateKasa(context.Background(), fmt.Sprint("k", i), col))
		}()
		go func() {
			defer wg.Done()
			<-start
			errs <- h.keep(h.c.Login(context.Background()))
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := h.srv.Logins(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
	if n := len(h.srv.Delivered()); n != 50 {
		t.Errorf("delivered = %d", n)
	}

	// All sessions revoked at once: 50 callers get 401 and share one re-login.
	h.srv.ExpireSessions()
	var wg2 sync.WaitGroup
	for i := range 50 {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			if err := h.keep(h.c.UpdateKasa(context.Background(), fmt.Sprint("r", i), col)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg2.Wait()
	if n := h.srv.Logins(); n != 2 {
		t.Errorf("logins after revocation = %d, want 2", n)
	}
}

// A login that times out fails every caller waiting for it: they do not
// line up to time out one after another.
func TestLoginTimeoutSharedByWaiters(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Timeout = time.Second })
	h.srv.FailNextLogin(1, oduyotest.Fault{Delay: 30 * time.Second})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- h.keep(h.c.Login(context.Background()))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		wantClass(t, err, Transient, 0)
	}
	if n := h.srv.Logins(); n != 1 {
		t.Errorf("logins = %d, want 1", n)
	}
}

func TestSessionRenewedBeforeExpiry(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	h := newHarness(t, func(c *Config) { c.Now = clock.Now })
	if err := h.kasa(t, "a", `{"id":1}`); err != nil {
		t.Fatal(err)
	}
	clock.Add(54*time.Minute + 59*time.Second)
	if err := h.kasa(t, "b", `{"id":1}`); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.Logins(); n != 1 {
		t.Fatalf("logins = %d before the renewal window", n)
	}
	if exp := h.c.SessionExpiry(); !exp.Equal(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("SessionExpiry = %v", exp)
	}
	clock.Add(time.Second) // 55 minutes: 5 minutes before the 60 run out
	if err := h.kasa(t, "c", `{"id":1}`); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.Logins(); n != 2 {
		t.Fatalf("logins = %d, want a renewal at 55m", n)
	}
	// The renewed session lasts another 55 minutes.
	clock.Add(54 * time.Minute)
	if err := h.c.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := h.srv.Logins(); n != 2 {
		t.Fatalf("logins = %d", n)
	}
	if got := h.srv.Requests(); got != 3 {
		t.Errorf("requests = %d: a renewal must not cost a failed call", got)
	}
}

func TestDownAndBackOnSameAddress(t *testing.T) {
	h := newHarness(t, nil)
	addr := h.srv.Addr()
	if err := h.kasa(t, "a", `{"id":1}`); err != nil {
		t.Fatal(err)
	}
	h.srv.SetDown(true)
	err := h.kasa(t, "b", `{"id":2}`)
	wantClass(t, err, Transient, 0)
	if !errors.Is(err, errConnRefused) {
		t.Errorf("err = %v, want connection refused", err)
	}
	perr := h.keep(h.c.Probe(context.Background()))
	wantClass(t, perr, Transient, 0)

	h.srv.SetDown(false)
	if h.srv.Addr() != addr {
		t.Fatalf("address changed: %s -> %s", addr, h.srv.Addr())
	}
	if err := h.keep(h.c.Probe(context.Background())); err != nil {
		t.Fatal(err)
	}
	if err := h.kasa(t, "b", `{"id":2}`); err != nil {
		t.Fatal(err)
	}
	if d := h.srv.Delivered(); len(d) != 2 || d[1].IdempotencyKey != "b" {
		t.Errorf("delivered %+v", d)
	}
}

func TestProbeIgnoresRecordFaults(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.keep(h.c.Probe(context.Background())); err != nil {
		t.Fatal(err)
	}
	h.srv.FailAlways(oduyotest.Fault{Status: 500}) // record faults do not touch the probe
	if err := h.keep(h.c.Probe(context.Background())); err != nil {
		t.Fatal(err)
	}
	// One login for both probes; no record was sent.
	if h.srv.Logins() != 1 || h.srv.Lists() != 2 || h.srv.Requests() != 0 {
		t.Errorf("logins %d lists %d requests %d", h.srv.Logins(), h.srv.Lists(), h.srv.Requests())
	}
}

func TestDuplicatesRecorded(t *testing.T) {
	h := newHarness(t, nil)
	for range 2 {
		if err := h.kasa(t, "same", `{"id":1}`); err != nil {
			t.Fatal(err)
		}
	}
	d := h.srv.Delivered()
	if len(d) != 2 || d[0].Duplicate || !d[1].Duplicate || d[0].Seq != 1 || d[1].Seq != 2 {
		t.Errorf("delivered %+v", d)
	}
}

func TestNewValidates(t *testing.T) {
	good := Config{BaseURL: "https://www.siteadi.com", APIKey: "k", Username: "u", Password: "p"}
	for name, mod := range map[string]func(*Config){
		"no url":      func(c *Config) { c.BaseURL = "" },
		"ftp":         func(c *Config) { c.BaseURL = "ftp://x" },
		"no host":     func(c *Config) { c.BaseURL = "https://" },
		"query":       func(c *Config) { c.BaseURL = "https://x/?a=1" },
		"userinfo":    func(c *Config) { c.BaseURL = "https://u:secret@x/" },
		"no key":      func(c *Config) { c.APIKey = "" },
		"no user":     func(c *Config) { c.Username = "" },
		"no password": func(c *Config) { c.Password = "" },
		"renew > ttl": func(c *Config) { c.SessionTTL = time.Minute; c.RenewBefore = 2 * time.Minute },
	} {
		cfg := good
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
}

func TestConfigHidesSecrets(t *testing.T) {
	cfg := Config{BaseURL: "https://x", APIKey: "APIKEY-SECRET-1", Username: "kasa", Password: "PASSWORD-SECRET-2"}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), logs.String()} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("secret in %q", s)
		}
		if !strings.Contains(s, "kasa") {
			t.Errorf("user name missing in %q", s)
		}
	}
}

func TestClientStringHidesSession(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.c.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("client", "c", h.c)
	sid := h.srv.Sessions()[0]
	for _, s := range []string{fmt.Sprint(h.c), fmt.Sprintf("%+v", h.c), logs.String()} {
		if !strings.Contains(s, "oduyo.Client{http://127.0.0.1:") {
			t.Errorf("client shown as %q", s)
		}
		if strings.Contains(s, sid) || strings.Contains(s, oduyotest.DefaultPassword) || strings.Contains(s, oduyotest.DefaultAPIKey) {
			t.Errorf("secret in %q", s)
		}
	}
}

// A server that echoes secrets back in its messages: the client scrubs them.
func TestServerEchoScrubbed(t *testing.T) {
	const key, pw = "echo-apikey-31337", "echo-password-4242"
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == LoginPath {
			_ = r.ParseForm()
			if r.Header.Get("X-Second") == "" && r.PostForm.Get("password") == pw {
				fmt.Fprint(w, `{"data":"`+tok+`"}`)
				return
			}
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"status":false,"message":"bad request key=%s pass=%s session=%s"}`, r.Header.Get("Apikey"), pw, r.Header.Get("Authorization"))
	}))
	defer ts.Close()
	var logs bytes.Buffer
	c, err := New(Config{BaseURL: ts.URL, APIKey: key, Username: "u", Password: pw,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	err = c.UpdateKasa(context.Background(), "k", json.RawMessage(`{"id":1}`))
	wantClass(t, err, Permanent, 400)
	for _, s := range []string{err.Error(), logs.String()} {
		for _, secret := range []string{key, pw, tok} {
			if strings.Contains(s, secret) {
				t.Errorf("%q leaks %q", s, secret)
			}
		}
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("err = %v", err)
	}
}

// TestSecretScan replays the scenarios of the client tests and scans
// every log line (debug level) and error string they produced for the
// password, the API key and every session id the fake server issued.
func TestSecretScan(t *testing.T) {
	scanMu.Lock()
	scanned, scanFakes = nil, nil
	scanMu.Unlock()
	for name, f := range map[string]func(*testing.T){
		"deliver": TestDeliverKasaAndSpecialCode, "faults": TestFaults, "slow": TestSlowServerTimesOut,
		"cancel": TestCallerCancel, "status false": TestStatusFalseIsPermanent, "styles": TestLoginStyles,
		"login failures": TestLoginFailures, "expiry": TestSessionExpiryRelogin, "401 twice": TestUnauthorizedTwiceIsAuth,
		"concurrent": TestConcurrentCallersShareOneLogin, "renewal": TestSessionRenewedBeforeExpiry, "login timeout": TestLoginTimeoutSharedByWaiters,
		"down": TestDownAndBackOnSameAddress, "probe": TestProbeIgnoresRecordFaults,
	} {
		t.Run(name, f)
	}
	scanMu.Lock()
	defer scanMu.Unlock()
	secrets := []string{oduyotest.DefaultAPIKey, oduyotest.DefaultPassword, "wrong-password-value"}
	for _, srv := range scanFakes {
		secrets = append(secrets, srv.Sessions()...)
	}
	lines, errs := 0, 0
	for _, text := range scanned {
		if strings.HasPrefix(text, "oduyo ") {
			errs++
		}
		lines += strings.Count(text, "\n")
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("secret %q… found in %q", s[:4], text)
			}
		}
	}
	t.Logf("scanned %d error strings and %d log lines for %d secrets", errs, lines, len(secrets))
	if errs < 20 || lines < 20 || len(secrets) < 20 {
		t.Errorf("too little scanned: %d errors, %d log lines, %d secrets", errs, lines, len(secrets))
	}
	if testing.Verbose() {
		for _, text := range scanned {
			if strings.HasPrefix(text, "oduyo ") {
				t.Log(text)
			}
		}
	}
}

// specExample is the special code example of Ödüyo's API documentation.
func specExample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "records", "testdata", "special-code-spec-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
