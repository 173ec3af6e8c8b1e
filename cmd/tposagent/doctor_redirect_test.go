package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/i18n"
)

// TestDoctorReachabilityDoesNotFollowRedirects: doctor's GET of a server
// does not follow a redirect (a captive portal's answer): it reports
// "redirects to <Location> (not the server)" as a failure, and the portal
// gets no request. Go's default policy, which the old code used, followed
// the redirect and showed the portal's 200 as "answers".
func TestDoctorReachabilityDoesNotFollowRedirects(t *testing.T) {
	var portalHits atomic.Int32
	portal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		portalHits.Add(1)
		fmt.Fprint(w, "Lütfen kullanım koşullarını kabul edin")
	}))
	defer portal.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, portal.URL+"/login", http.StatusFound)
	}))
	defer srv.Close()
	type finding struct{ level, what, msg string }
	var got []finding
	add := func(level, what, format string, a ...any) {
		got = append(got, finding{level, what, fmt.Sprintf(format, a...)})
	}
	checkServer(context.Background(), i18n.EN, add, &http.Client{}, "oduyo", srv.URL, 5*time.Second)
	if len(got) != 1 || got[0].level != "FAIL" || !strings.Contains(got[0].msg, "redirects to "+portal.URL+"/login (not the server)") {
		t.Fatalf("findings %+v, want one FAIL naming the redirect's target", got)
	}
	if n := portalHits.Load(); n != 0 {
		t.Errorf("the redirect was followed: the portal got %d requests", n)
	}

	// A server that answers itself is still "answers".
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	defer ok.Close()
	got = nil
	checkServer(context.Background(), i18n.EN, add, &http.Client{}, "oduyo", ok.URL, 5*time.Second)
	if len(got) == 0 || got[0].level != "ok" || !strings.Contains(got[0].msg, "answers (HTTP 404)") {
		t.Fatalf("findings %+v, want ok/answers", got)
	}
}
