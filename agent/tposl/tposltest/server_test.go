package tposltest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
)

func params(serial string) tposl.Params {
	return tposl.Params{
		VergiNumarasi: "1234567890", VergiDairesi: "Kadıköy", FirmaAdi: "Örnek Gıda A.Ş.",
		PosNo: 1, PosTipi: 1, YKFiscalSeriNo: serial, DonemYili: 2026,
		KasaTarihSaat: "2026-11-23 10:00:00", WebErisimKullanici: "u", WebErisimSifre: "gizli-şifre",
	}
}

func post(t *testing.T, url, ctype string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestServerRecordsAndAnswers(t *testing.T) {
	s := tposltest.NewServer()
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/TPOSL") {
		t.Errorf("URL %s", s.URL())
	}
	for _, serial := range []string{"JI20000001", "JI20000002", "JI20000003"} {
		b, _ := json.Marshal(params(serial))
		resp, body := post(t, s.URL(), "application/json", b)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		r, err := tposl.DecodeReturn(body)
		if err != nil || !r.Status || r.OnayFiscalSeriNo != serial {
			t.Errorf("default answer %+v, %v", r, err)
		}
	}
	reqs := s.Requests()
	if len(reqs) != 3 || reqs[0].YKFiscalSeriNo != "JI20000001" || reqs[2].YKFiscalSeriNo != "JI20000003" || reqs[1].FirmaAdi != "Örnek Gıda A.Ş." {
		t.Errorf("requests %+v", reqs)
	}
	if s.Calls() != 3 {
		t.Errorf("calls %d", s.Calls())
	}

	// XML in, XML out when the client asks for XML only.
	x, _ := xml.Marshal(params("JI20000004"))
	req, _ := http.NewRequest(http.MethodPost, s.URL(), bytes.NewReader(x))
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("Accept", "application/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/xml") || !bytes.HasPrefix(body, []byte("<ITPOSReturn")) {
		t.Errorf("xml answer %s: %s", resp.Header.Get("Content-Type"), body)
	}
	if got := s.Requests(); len(got) != 4 || got[3].YKFiscalSeriNo != "JI20000004" {
		t.Errorf("xml request not recorded: %+v", got)
	}
}

func TestServerRejectsBadRequests(t *testing.T) {
	s := tposltest.NewServer()
	defer s.Close()
	for name, tc := range map[string]struct {
		ctype, body string
		status      int
	}{
		"unknown field": {"application/json", `{"VERGI_NUMARASI":"1","EXTRA":1}`, 400},
		"int as string": {"application/json", `{"POS_NO":"1"}`, 400},
		"over a limit":  {"application/json", `{"VERGI_NUMARASI":"` + strings.Repeat("1", 36) + `"}`, 400},
		"not json":      {"application/json", `hello`, 400},
		"form encoded":  {"application/x-www-form-urlencoded", `a=b`, 400},
	} {
		resp, body := post(t, s.URL(), tc.ctype, []byte(tc.body))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d: %s", name, resp.StatusCode, body)
		}
	}
	resp, err := http.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	resp, _ = post(t, strings.TrimSuffix(s.URL(), "/TPOSL")+"/api/Other", "application/json", []byte("{}"))
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("other path: %d", resp.StatusCode)
	}
	if len(s.Requests()) != 0 {
		t.Errorf("bad requests recorded: %+v", s.Requests())
	}
}

func TestServerDownAndBack(t *testing.T) {
	s := tposltest.NewServer()
	defer s.Close()
	b, _ := json.Marshal(params("JI20000001"))

	// A kept-alive connection exists before the outage.
	c := &http.Client{Transport: &http.Transport{}}
	resp, err := c.Post(s.URL(), "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if err := s.SetFault(tposltest.Fault{Mode: tposltest.Down}); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), 2*time.Second); err == nil {
		t.Error("dial succeeded while down")
	}
	if _, err := c.Post(s.URL(), "application/json", bytes.NewReader(b)); err == nil {
		t.Error("request over the old connection succeeded while down")
	}
	if err := s.SetFault(tposltest.Fault{}); err != nil {
		t.Fatal(err)
	}
	resp, err = c.Post(s.URL(), "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("after coming back: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || len(s.Requests()) != 2 {
		t.Errorf("status %d, %d requests", resp.StatusCode, len(s.Requests()))
	}
	// Down twice and up twice are harmless.
	_ = s.SetFault(tposltest.Fault{Mode: tposltest.Down})
	_ = s.SetFault(tposltest.Fault{Mode: tposltest.Down})
	_ = s.SetFault(tposltest.Fault{})
	if err := s.SetFault(tposltest.Fault{}); err != nil {
		t.Fatal(err)
	}
	if s.Fault().Mode != tposltest.None {
		t.Errorf("fault %v", s.Fault())
	}
}

func TestServerSlowReleasedByClose(t *testing.T) {
	s := tposltest.NewServer()
	_ = s.SetFault(tposltest.SlowFault(time.Hour))
	b, _ := json.Marshal(params("JI20000001"))
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL(), bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.Calls() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // poll for the call to arrive
	}
	s.Close()
	s.Close() // idempotent
	select {
	case err := <-done:
		if err == nil {
			t.Error("a slow call answered after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close left a slow call hanging")
	}
	if err := s.SetFault(tposltest.Fault{}); err == nil {
		t.Error("SetFault after Close succeeded")
	}
}

func TestServerCredentials(t *testing.T) {
	s := tposltest.NewServer()
	defer s.Close()
	s.SetCredentials("u", "right")
	b, _ := json.Marshal(params("JI20000001"))
	_, body := post(t, s.URL(), "application/json", b)
	r, err := tposl.DecodeReturn(body)
	if err != nil || r.Status || r.ErrorMessageCode != 401 || !strings.Contains(r.ErrorMessage, "şifresi hatalı") {
		t.Errorf("wrong password answer %+v, %v", r, err)
	}
	if bytes.Contains(body, []byte("gizli-şifre")) {
		t.Error("the fake echoes the password")
	}
}

func TestServerAnswerFunc(t *testing.T) {
	s := tposltest.NewServer()
	defer s.Close()
	s.SetReturn(tposl.Return{Status: true, Aktif: 0})
	s.SetAnswerFunc(func(p tposl.Params) tposl.Return {
		return tposl.Return{Status: true, Aktif: 1, Id: p.PosNo * 10, OnayFiscalSeriNo: p.YKFiscalSeriNo}
	})
	b, _ := json.Marshal(params("JI20000009"))
	_, body := post(t, s.URL(), "application/json", b)
	r, err := tposl.DecodeReturn(body)
	if err != nil || r.Id != 10 || r.OnayFiscalSeriNo != "JI20000009" || r.Aktif != 1 {
		t.Errorf("answer func: %+v, %v", r, err)
	}
	s.SetAnswerFunc(nil)
	_, body = post(t, s.URL(), "application/json", b)
	if r, _ = tposl.DecodeReturn(body); r.Aktif != 0 {
		t.Errorf("SetReturn after removing the func: %+v", r)
	}
	s.ClearRequests()
	if s.Calls() != 0 || len(s.Requests()) != 0 {
		t.Error("ClearRequests")
	}
}

func TestModeString(t *testing.T) {
	seen := map[string]bool{}
	for m := tposltest.None; m <= tposltest.XML; m++ {
		s := m.String()
		if seen[s] || strings.HasPrefix(s, "mode(") {
			t.Errorf("mode %d: %q", int(m), s)
		}
		seen[s] = true
	}
}
