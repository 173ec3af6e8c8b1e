package oduyotest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func login(t *testing.T, s *Server) string {
	t.Helper()
	resp, err := http.PostForm(s.URL()+LoginPath, url.Values{
		"username": {s.Username}, "password": {s.Password}, "oduyo_api_key": {s.APIKey},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Status bool   `json:"status"`
		Data   string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || !out.Status || out.Data == "" {
		t.Fatalf("login: %d %+v %v", resp.StatusCode, out, err)
	}
	return out.Data
}

func post(t *testing.T, s *Server, path string, hdr map[string]string, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServerChecksRequests(t *testing.T) {
	s := NewServer(WithCredentials("key-1", "kullanıcı", "şifre-1"), WithClock(func() time.Time { return time.Unix(100, 0) }))
	defer s.Close()
	sid := login(t, s)
	good := map[string]string{"Apikey": "key-1", "Authorization": sid, "Content-Type": "application/json", "Idempotency-Key": "i1"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	tests := []struct {
		name string
		path string
		hdr  map[string]string
		body string
		code int
		want string
	}{
		{"wrong api key", KasaUpdatePath, with("Apikey", "nope"), `{"column":{"id":1}}`, 403, `"status":false`},
		{"bearer prefix", KasaUpdatePath, with("Authorization", "Bearer "+sid), `{"column":{"id":1}}`, 401, `"status":false`},
		{"no session", KasaUpdatePath, with("Authorization", ""), `{"column":{"id":1}}`, 401, `"status":false`},
		{"form body", KasaUpdatePath, with("Content-Type", "application/x-www-form-urlencoded"), `{"column":{"id":1}}`, 415, `"status":false`},
		{"no wrapper", KasaUpdatePath, good, `{"id":1}`, 400, `"status":false`},
		{"kasa", KasaUpdatePath, good, `{"column":{"id":1,"note":"ğüş"}}`, 200, `{"status":true,"data":"Guncelleme islemi Basarili"}`},
		{"special code", SpecialCodePath, good, `{"column":{"integration_id":"9","code":"X"}}`, 200, `"data":"\"Erp Special Code successfully added id <2>\""`},
	}
	for _, tc := range tests {
		code, body := post(t, s, tc.path, tc.hdr, tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s", tc.name, code, body)
		}
	}
	d := s.Delivered()
	if len(d) != 2 || string(d[0].Column) != `{"id":1,"note":"ğüş"}` || d[0].ID != "1" || !d[0].At.Equal(time.Unix(100, 0)) ||
		d[1].Kind != KindSpecialCode || d[1].IntegrationID != "9" || !d[1].Duplicate {
		t.Errorf("delivered %+v", d)
	}
	if s.Requests() != 7 || s.Logins() != 1 || len(s.Sessions()) != 1 || s.Sessions()[0] != sid {
		t.Errorf("requests %d logins %d sessions %v", s.Requests(), s.Logins(), s.Sessions())
	}

	// Wrong password: refused, nothing issued.
	resp, err := http.PostForm(s.URL()+LoginPath, url.Values{"username": {"kullanıcı"}, "password": {"x"}, "oduyo_api_key": {"key-1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || len(s.Sessions()) != 1 {
		t.Errorf("bad login: %d, %d sessions", resp.StatusCode, len(s.Sessions()))
	}
}

func TestServerDownRefusesAndComesBack(t *testing.T) {
	s := NewServer()
	defer s.Close()
	addr := s.Addr()
	s.SetDown(true)
	s.SetDown(true) // idempotent
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded while down")
	}
	s.SetDown(false)
	if s.Addr() != addr {
		t.Fatal("address changed")
	}
	login(t, s)
	s.Close()
	s.Close() // idempotent
	s.SetDown(false)
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded after Close")
	}
}

func TestServerFaultQueue(t *testing.T) {
	s := NewServer()
	defer s.Close()
	sid := login(t, s)
	hdr := map[string]string{"Apikey": s.APIKey, "Authorization": sid, "Content-Type": "application/json"}
	s.FailNext(1, Fault{Status: 429, RetryAfter: "3"})
	s.FailNext(1, Fault{HTML: true, Status: 502})
	s.FailAlways(Fault{Malformed: true})
	req, _ := http.NewRequest(http.MethodPost, s.URL()+KasaUpdatePath, strings.NewReader(`{"column":{"id":1}}`))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("first: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, body := post(t, s, KasaUpdatePath, hdr, `{"column":{"id":1}}`); code != 502 || !strings.Contains(body, "<html>") {
		t.Errorf("second: %d %s", code, body)
	}
	for range 2 {
		if code, body := post(t, s, KasaUpdatePath, hdr, `{"column":{"id":1}}`); code != 200 || json.Valid([]byte(body)) {
			t.Errorf("standing fault: %d %s", code, body)
		}
	}
	s.ClearFaults()
	if code, _ := post(t, s, KasaUpdatePath, hdr, `{"column":{"id":1}}`); code != 200 || len(s.Delivered()) != 1 {
		t.Errorf("after clear: %d, %d delivered", code, len(s.Delivered()))
	}
}

func TestServerBodyFault(t *testing.T) {
	s := NewServer()
	defer s.Close()
	sid := login(t, s)
	s.FailNext(1, Fault{Body: `{"status":false,"message":"Kayıt yok"}`})
	hdr := map[string]string{"Apikey": s.APIKey, "Authorization": sid, "Content-Type": "application/json"}
	if code, body := post(t, s, KasaUpdatePath, hdr, `{"column":{"id":1}}`); code != 200 || body != `{"status":false,"message":"Kayıt yok"}` {
		t.Errorf("%d %s", code, body)
	}
	if len(s.Delivered()) != 0 {
		t.Error("a faulted request was delivered")
	}
}
