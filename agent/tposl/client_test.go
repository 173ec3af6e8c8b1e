package tposl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/testrig"
)

func buildParams(t *testing.T) tposl.Params {
	t.Helper()
	p, err := tposl.Build(sampleStore(), sampleFacts(), sampleCreds)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newClient(t *testing.T, u string, timeout time.Duration, logs io.Writer) *tposl.Client {
	t.Helper()
	var log *slog.Logger
	if logs != nil {
		log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := tposl.New(tposl.Config{URL: u, Timeout: timeout, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRegister(t *testing.T) {
	srv := tposltest.NewServer()
	defer srv.Close()
	c := newClient(t, srv.URL(), 5*time.Second, nil)
	p := buildParams(t)

	r, err := c.Register(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Status || r.Aktif != 1 || r.LisansStatus != 1 || r.OnayFiscalSeriNo != ours {
		t.Errorf("default answer: %+v", r)
	}
	if l := tposl.Evaluate(r, ours, fixedNow); l.State != tposl.Licensed || !l.GMP3.Active {
		t.Errorf("licence: %+v", l)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0] != p {
		t.Fatalf("server got %d requests: %+v\nwant %+v", len(reqs), reqs, p)
	}
	if reqs[0].FirmaAdi != "Örnek Gıda A.Ş. "+turkish || reqs[0].PCName != "KASA-İŞÇİ-01" {
		t.Errorf("turkish text changed: %q %q", reqs[0].FirmaAdi, reqs[0].PCName)
	}

	want := tposl.Return{Status: true, Aktif: 1, LisansStatus: 0, DemoLisansGun: 30, DemoBasTarih: "2026-11-13",
		OnayFiscalSeriNo: ours, ErrorMessage: "Demo lisans: ğüşıöçİ"}
	srv.SetReturn(want)
	if r, err = c.Register(context.Background(), p); err != nil || r != want {
		t.Errorf("SetReturn answer: %+v, %v", r, err)
	}
	if l := tposl.Evaluate(r, ours, fixedNow); l.State != tposl.Demo || l.DaysLeft != 20 {
		t.Errorf("demo licence: %+v", l)
	}
	if srv.Calls() != 2 || len(srv.Requests()) != 2 {
		t.Errorf("calls %d requests %d", srv.Calls(), len(srv.Requests()))
	}
}

// TestRegisterWire checks the bytes on the wire: method, headers, JSON with
// numbers as numbers and Turkish letters as UTF-8, not escaped.
func TestRegisterWire(t *testing.T) {
	var (
		mu   sync.Mutex
		body []byte
		hdr  http.Header
		meth string
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		body, hdr, meth = b, r.Header.Clone(), r.Method
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `{"Status":true,"Aktif":1,"LisansStatus":1}`)
	}))
	defer ts.Close()
	c := newClient(t, ts.URL+"/TPOSL", 5*time.Second, nil)
	if _, err := c.Register(context.Background(), buildParams(t)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if meth != http.MethodPost || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("method %s content type %q", meth, hdr.Get("Content-Type"))
	}
	for _, s := range []string{`"FIRMA_ADI":"Örnek Gıda A.Ş. ğüşıöçİ ĞÜŞIÖÇ"`, `"VERGI_DAIRESI":"Kadıköy"`,
		`"POS_NO":3`, `"DONEM_YILI":2026`, `"E_FAT_AKTIF":1`, `"PC_NAME":"KASA-İŞÇİ-01"`} {
		if !bytes.Contains(body, []byte(s)) {
			t.Errorf("wire body lacks %s:\n%s", s, body)
		}
	}
}

func TestRegisterHTTPS(t *testing.T) {
	srv := tposltest.NewServer()
	defer srv.Close()
	target, _ := url.Parse("http://" + srv.Addr())
	ts := httptest.NewUnstartedServer(proxyTo(target))
	ts.Config.ErrorLog = stdlog.New(io.Discard, "", 0) // the refused handshake below
	ts.StartTLS()
	defer ts.Close()

	// A client that trusts the test certificate works.
	c, err := tposl.New(tposl.Config{URL: ts.URL + tposltest.Path, HTTPClient: ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Register(context.Background(), buildParams(t)); err != nil || !r.Status {
		t.Fatalf("https: %+v, %v", r, err)
	}
	// The default client does not trust it: certificates are checked.
	c2 := newClient(t, ts.URL+tposltest.Path, 5*time.Second, nil)
	_, err = c2.Register(context.Background(), buildParams(t))
	var e *tposl.Error
	if !errors.As(err, &e) || e.Kind != tposl.Network || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
}

func proxyTo(target *url.URL) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, target.String()+r.URL.Path, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

func TestRegisterRefusesDowngradeRedirect(t *testing.T) {
	plain := tposltest.NewServer()
	defer plain.Close()
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL(), http.StatusTemporaryRedirect)
	}))
	defer ts.Close()
	c, err := tposl.New(tposl.Config{URL: ts.URL + "/TPOSL", HTTPClient: ts.Client()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(context.Background(), buildParams(t))
	var e *tposl.Error
	if !errors.As(err, &e) || e.Kind != tposl.HTTPStatus || e.StatusCode != 307 {
		t.Errorf("redirect to http: %v", err)
	}
	if plain.Calls() != 0 {
		t.Errorf("the password went to the plain http server (%d calls)", plain.Calls())
	}
}

func TestRegisterFaults(t *testing.T) {
	tests := []struct {
		name      string
		fault     tposltest.Fault
		kind      tposl.Kind
		status    int
		temporary bool
		text      string // in the error text
	}{
		{"down", tposltest.Fault{Mode: tposltest.Down}, tposl.Network, 0, true, "refused"},
		{"reset", tposltest.Fault{Mode: tposltest.Reset}, tposl.Network, 0, true, "network error"},
		{"500", tposltest.StatusFault(500), tposl.HTTPStatus, 500, true, "http status 500 Internal Server Error"},
		{"502", tposltest.StatusFault(502), tposl.HTTPStatus, 502, true, "502 Bad Gateway"},
		{"503", tposltest.StatusFault(503), tposl.HTTPStatus, 503, true, "fake 503"},
		{"429", tposltest.Fault{Mode: tposltest.Status, Code: 429, RetryAfter: "Fri, 01 Jan 2100 00:00:00 GMT"}, tposl.HTTPStatus, 429, true, "429 Too Many Requests"},
		{"404 is not temporary", tposltest.StatusFault(404), tposl.HTTPStatus, 404, false, "404 Not Found"},
		{"html proxy page", tposltest.Fault{Mode: tposltest.HTMLPage}, tposl.HTML, 200, true, `"Erişim Engellendi - Web Proxy"`},
		{"malformed json", tposltest.Fault{Mode: tposltest.MalformedJSON}, tposl.Decode, 200, false, "decode"},
		{"not json", tposltest.Fault{Mode: tposltest.NotJSON}, tposl.NotJSON, 200, false, `body "OK"`},
		{"slow", tposltest.SlowFault(time.Minute), tposl.Network, 0, true, "deadline exceeded"},
	}
	srv := tposltest.NewServer()
	defer srv.Close()
	p := buildParams(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := srv.SetFault(tt.fault); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := srv.SetFault(tposltest.Fault{}); err != nil {
					t.Fatal(err)
				}
			}()
			c := newClient(t, srv.URL(), 300*time.Millisecond, nil)
			start := time.Now()
			r, err := c.Register(context.Background(), p)
			if err == nil {
				t.Fatalf("no error, answer %+v", r)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			var e *tposl.Error
			if !errors.As(err, &e) {
				t.Fatalf("%T %v, want *tposl.Error", err, err)
			}
			if e.Kind != tt.kind || e.StatusCode != tt.status || e.Temporary() != tt.temporary {
				t.Errorf("kind %s status %d temporary %v, want %s %d %v (%v)", e.Kind, e.StatusCode, e.Temporary(), tt.kind, tt.status, tt.temporary, err)
			}
			if !strings.Contains(err.Error(), tt.text) || !strings.HasPrefix(err.Error(), "tposl register: ") {
				t.Errorf("error %q, want it to contain %q", err, tt.text)
			}
			if tt.name == "slow" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("slow: %v does not wrap context.DeadlineExceeded", err)
			}
		})
	}

	// Healed: the same URL works again after the outage.
	c := newClient(t, srv.URL(), 5*time.Second, nil)
	if r, err := c.Register(context.Background(), p); err != nil || !r.Status {
		t.Fatalf("after faults: %+v, %v", r, err)
	}

	t.Run("xml answer", func(t *testing.T) {
		want := tposl.Return{Status: true, Aktif: 1, LisansStatus: 1, Id: 42, OnayFiscalSeriNo: ours, LisansModul: "Perakende ĞÜŞ"}
		srv.SetReturn(want)
		_ = srv.SetFault(tposltest.Fault{Mode: tposltest.XML})
		defer srv.SetFault(tposltest.Fault{})
		r, err := c.Register(context.Background(), p)
		if err != nil || r != want {
			t.Errorf("xml: %+v, %v", r, err)
		}
	})

	t.Run("retry-after", func(t *testing.T) {
		_ = srv.SetFault(tposltest.Fault{Mode: tposltest.Status, Code: 503, RetryAfter: "120"})
		defer srv.SetFault(tposltest.Fault{})
		_, err := c.Register(context.Background(), p)
		var e *tposl.Error
		if !errors.As(err, &e) || e.RetryAfter != 2*time.Minute {
			t.Errorf("retry-after: %v %+v", err, e)
		}
	})

	t.Run("cancelled by the caller", func(t *testing.T) {
		_ = srv.SetFault(tposltest.SlowFault(time.Minute))
		defer srv.SetFault(tposltest.Fault{})
		ctx, cancel := context.WithCancel(context.Background())
		deadline := time.Now().Add(10 * time.Second)
		done := make(chan error, 1)
		calls := srv.Calls()
		go func() { _, err := c.Register(ctx, p); done <- err }()
		for srv.Calls() == calls && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // poll for the call to arrive, not a timer wait
		}
		cancel()
		err := <-done
		var e *tposl.Error
		if !errors.As(err, &e) || e.Kind != tposl.Network || !errors.Is(err, context.Canceled) {
			t.Errorf("cancel: %v", err)
		}
	})
}

func TestRegisterOtherAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
		kind   tposl.Kind
		text   string
	}{
		{"empty 200", 200, "application/json", "", tposl.NotJSON, "empty body"},
		{"json array", 200, "application/json", `[{"Status":true}]`, tposl.Decode, "array"},
		{"wrong json types", 200, "application/json", `{"Status":{"x":1}}`, tposl.Decode, "decode"},
		{"captive portal without content type", 200, "", "<!DOCTYPE html><html><title>Login</title></html>", tposl.HTML, `"Login"`},
		{"binary", 200, "application/octet-stream", "\x00\x01\x02", tposl.NotJSON, "binary"},
		{"asp.net 400", 400, "application/json", `{"Message":"The request is invalid."}`, tposl.HTTPStatus, `server says "The request is invalid."`},
		{"404 html", 404, "text/html", "<html><head><title>404 - Bulunamadı</title></head></html>", tposl.HTTPStatus, `"404 - Bulunamadı"`},
		{"429", 429, "text/plain", "slow down", tposl.HTTPStatus, "429 Too Many Requests"},
		{"xml of another type", 200, "application/xml", "<Error><Message>x</Message></Error>", tposl.Decode, "not an ITPOSReturn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = []string{tt.ctype}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer ts.Close()
			_, err := newClient(t, ts.URL, 5*time.Second, nil).Register(context.Background(), buildParams(t))
			var e *tposl.Error
			if !errors.As(err, &e) || e.Kind != tt.kind || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("got %v (kind %v), want kind %s with %q", err, kindOf(e), tt.kind, tt.text)
			}
		})
	}
}

func kindOf(e *tposl.Error) tposl.Kind {
	if e == nil {
		return ""
	}
	return e.Kind
}

func TestRegisterChecksLimits(t *testing.T) {
	srv := tposltest.NewServer()
	defer srv.Close()
	p := buildParams(t)
	p.VergiNumarasi = strings.Repeat("1", 36)
	_, err := newClient(t, srv.URL(), time.Second, nil).Register(context.Background(), p)
	var fe *tposl.FieldError
	if !errors.As(err, &fe) || fe.Field != "VERGI_NUMARASI" || fe.Limit != 35 || fe.Len != 36 {
		t.Errorf("got %v", err)
	}
	if srv.Calls() != 0 {
		t.Error("params over a limit were sent")
	}
}

func TestRegisterWrongCredentials(t *testing.T) {
	srv := tposltest.NewServer()
	defer srv.Close()
	srv.SetCredentials(sampleCreds.Username, "another password")
	r, err := newClient(t, srv.URL(), time.Second, nil).Register(context.Background(), buildParams(t))
	if err != nil {
		t.Fatal(err)
	}
	l := tposl.Evaluate(r, ours, fixedNow)
	if l.State != tposl.Unregistered || l.ErrorCode != 401 || !strings.Contains(l.Message, "şifresi hatalı") {
		t.Errorf("%+v", l)
	}
	srv.SetCredentials(sampleCreds.Username, sampleCreds.Password)
	r, err = newClient(t, srv.URL(), time.Second, nil).Register(context.Background(), buildParams(t))
	if err != nil || !r.Status {
		t.Errorf("right credentials: %+v %v", r, err)
	}
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "ftp://host/TPOSL", "https://", "://x", "host/api"} {
		if _, err := tposl.New(tposl.Config{URL: u}); !errors.Is(err, tposl.ErrConfig) {
			t.Errorf("New(%q) = %v, want ErrConfig", u, err)
		}
	}
	// Plain http: loopback silently, private network with a warning,
	// public only when allowed, with a warning.
	tests := []struct {
		url   string
		allow bool
		ok    bool
		warn  bool
	}{
		{"https://lisans.example.com/TPOSL", false, true, false},
		{"http://127.0.0.1:9/TPOSL", false, true, false},
		{"http://[::1]:9/TPOSL", false, true, false},
		{"http://localhost/x", false, true, false},
		{"http://192.168.1.10/TPOSL", false, true, true},
		{"http://10.0.0.5:8080/TPOSL", false, true, true},
		{"http://tposl-sunucu/TPOSL", false, true, true},
		{"http://lisans.magaza.local/TPOSL", false, true, true},
		{"http://lisans.example.com/TPOSL", false, false, false},
		{"http://8.8.8.8/TPOSL", false, false, false},
		{"http://lisans.example.com/TPOSL", true, true, true},
	}
	for _, tt := range tests {
		var logs testrig.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		_, err := tposl.New(tposl.Config{URL: tt.url, Logger: log, AllowPlainHTTP: tt.allow})
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, tposl.ErrConfig)) {
			t.Errorf("New(%q, allow %v) = %v, want ok %v", tt.url, tt.allow, err, tt.ok)
		}
		if got := strings.Contains(logs.String(), "plain http"); got != tt.warn {
			t.Errorf("New(%q): warning %v, want %v: %s", tt.url, got, tt.warn, logs.String())
		}
	}
}

func TestPing(t *testing.T) {
	srv := tposltest.NewServer()
	defer srv.Close()
	c := newClient(t, srv.URL(), 2*time.Second, nil)
	if err := c.Ping(context.Background()); err != nil {
		t.Errorf("ping: %v", err)
	}
	if len(srv.Requests()) != 0 {
		t.Error("ping registered")
	}
	_ = srv.SetFault(tposltest.Fault{Mode: tposltest.Down})
	var e *tposl.Error
	if err := c.Ping(context.Background()); !errors.As(err, &e) || e.Kind != tposl.Network || !strings.HasPrefix(err.Error(), "tposl ping: ") {
		t.Errorf("ping while down: %v", err)
	}
	_ = srv.SetFault(tposltest.Fault{Mode: tposltest.HTMLPage})
	if err := c.Ping(context.Background()); !errors.As(err, &e) || e.Kind != tposl.HTML {
		t.Errorf("ping behind a captive portal: %v", err)
	}
	if c.URL() != srv.URL() {
		t.Errorf("URL %s", c.URL())
	}
}

// TestSecretNeverLeaks drives every failure, including servers that echo
// the request (and so the password) back in every place an error or log
// line could quote, and scans all error text and log lines.
func TestSecretNeverLeaks(t *testing.T) {
	p := buildParams(t)
	secret := p.WebErisimSifre
	jsonSecret, _ := json.Marshal(secret)
	needles := []string{secret, string(jsonSecret[1 : len(jsonSecret)-1]), url.QueryEscape(secret), "S3cr3t"}

	var logs testrig.Buffer
	var texts []string
	collect := func(err error) {
		if err == nil {
			return
		}
		texts = append(texts, err.Error(), fmt.Sprintf("%v|%+v|%#v|%s", err, err, err, err))
		for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
			if _, ok := e.(*tposl.Error); ok {
				texts = append(texts, e.Error())
			}
		}
	}

	srv := tposltest.NewServer()
	defer srv.Close()
	for _, f := range []tposltest.Fault{
		{Mode: tposltest.Down}, {Mode: tposltest.Reset}, tposltest.StatusFault(500), tposltest.StatusFault(502),
		tposltest.StatusFault(503), {Mode: tposltest.HTMLPage}, {Mode: tposltest.MalformedJSON},
		{Mode: tposltest.NotJSON}, tposltest.SlowFault(time.Minute), {Mode: tposltest.XML}, {},
	} {
		if err := srv.SetFault(f); err != nil {
			t.Fatal(err)
		}
		c := newClient(t, srv.URL(), 200*time.Millisecond, &logs)
		_, err := c.Register(context.Background(), p)
		collect(err)
	}
	_ = srv.SetFault(tposltest.Fault{})

	// Evil servers echo the request body everywhere.
	echo := func(status int, ctype, format string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Location", "https://x/?p="+url.QueryEscape(secret))
			w.WriteHeader(status)
			fmt.Fprintf(w, format, b, secret)
		})
	}
	for _, h := range []http.Handler{
		echo(500, "text/plain", "%s %s"),
		echo(200, "text/plain", "%.0s%s"),
		echo(400, "application/json", `{"Message":"bad %.0s%s"}`),
		echo(200, "application/json", `{"Status":%s, "x":"%s"`),
		echo(200, "text/html", "<html><title>%.0s%s</title></html>"),
		echo(302, "text/html", "<html><title>%.0s%s</title></html>"),
		echo(200, "application/xml", "<ITPOSReturn><Status>%.0s%s</Status></ITPOSReturn>"),
		echo(200, "application/json", `{"Aktif":"%.0s%s"}`),
	} {
		ts := httptest.NewServer(h)
		_, err := newClient(t, ts.URL+"/TPOSL", time.Second, &logs).Register(context.Background(), p)
		if err == nil {
			t.Errorf("evil server answer accepted")
		}
		collect(err)
		ts.Close()
	}
	// A URL that carries the password (mistyped config) is not quoted either.
	c := newClient(t, "http://127.0.0.1:1/TPOSL?p="+url.QueryEscape(secret), 200*time.Millisecond, &logs)
	_, err := c.Register(context.Background(), p)
	collect(err)

	if len(texts) < 20 {
		t.Fatalf("only %d error texts collected", len(texts))
	}
	all := strings.Join(texts, "\n") + "\n" + logs.String()
	for _, n := range needles {
		if strings.Contains(all, n) {
			t.Errorf("secret form %q leaked:\n%s", n, all)
		}
	}
	if !strings.Contains(logs.String(), "tposl register") || !strings.Contains(all, "[REDACTED]") {
		t.Errorf("the scan saw no logs or no redaction; logs:\n%s", logs.String())
	}
}

func TestRegisterConcurrent(t *testing.T) {
	srv := tposltest.NewServer()
	defer srv.Close()
	c := newClient(t, srv.URL(), 10*time.Second, nil)
	p := buildParams(t)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, err := c.Register(context.Background(), p); err != nil || !r.Status {
				errs <- fmt.Errorf("register: %+v, %v", r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if srv.Calls() != 20 || len(srv.Requests()) != 20 {
		t.Errorf("calls %d requests %d", srv.Calls(), len(srv.Requests()))
	}
}
