package tposl_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
)

// counting is an httptest server that counts what reaches it and answers
// a registration as a licence server would.
func counting(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"Status":true,"Aktif":1,"LisansStatus":1}`)
	}))
	t.Cleanup(ts.Close)
	return ts, &hits
}

// TestRegisterFollowsNoRedirect: A licence server that
// answers 307 or 308 with a Location on another host (here: another port,
// another origin) got the whole registration, WebErisimSifre included, on
// the old code. Now no redirect of the POST is followed — to another
// origin or to its own — the second server receives nothing, and the
// error names the Location without the password.
func TestRegisterFollowsNoRedirect(t *testing.T) {
	other, otherHits := counting(t)
	for _, code := range []int{301, 302, 303, 307, 308} {
		for _, sameOrigin := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d same-origin=%v", code, sameOrigin), func(t *testing.T) {
				var moved atomic.Int32
				var first *httptest.Server
				first = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/moved" {
						moved.Add(1)
						return
					}
					target := other.URL + "/TPOSL"
					if sameOrigin {
						target = first.URL + "/moved"
					}
					http.Redirect(w, r, target, code)
				}))
				defer first.Close()
				before := otherHits.Load()
				c := newClient(t, first.URL+"/TPOSL", 5*time.Second, nil)
				_, err := c.Register(context.Background(), buildParams(t))
				var e *tposl.Error
				if !errors.As(err, &e) || e.Kind != tposl.HTTPStatus || e.StatusCode != code {
					t.Fatalf("err = %v, want the %d answer as an error", err, code)
				}
				if n := otherHits.Load() - before; n != 0 {
					t.Errorf("the other server received %d requests", n)
				}
				if n := moved.Load(); n != 0 {
					t.Errorf("the same-origin target received %d requests (a POST follows no redirect)", n)
				}
				want := other.URL + "/TPOSL"
				if sameOrigin {
					want = first.URL + "/moved"
				}
				if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not followed") {
					t.Errorf("error does not name the Location %s: %v", want, err)
				}
				if strings.Contains(err.Error(), sampleCreds.Password) {
					t.Errorf("the password is in the error: %v", err)
				}
			})
		}
	}
}

// TestPingRedirects: a GET (the reachability probe) follows a redirect
// within its origin only; one to another origin is an error naming the
// Location, and the other server receives nothing.
func TestPingRedirects(t *testing.T) {
	other, otherHits := counting(t)
	var moved atomic.Int32
	var first *httptest.Server
	first = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			moved.Add(1)
			w.WriteHeader(http.StatusMethodNotAllowed) // as the real server answers a GET
		case "/away":
			http.Redirect(w, r, other.URL+"/login?session=1", http.StatusFound)
		default:
			http.Redirect(w, r, first.URL+"/moved", http.StatusFound)
		}
	}))
	defer first.Close()

	if err := newClient(t, first.URL+"/TPOSL", 5*time.Second, nil).Ping(context.Background()); err != nil || moved.Load() != 1 {
		t.Errorf("same-origin redirect of a GET: err %v, target reached %d times, want nil and 1", err, moved.Load())
	}
	err := newClient(t, first.URL+"/away", 5*time.Second, nil).Ping(context.Background())
	var e *tposl.Error
	if !errors.As(err, &e) || e.StatusCode != http.StatusFound || !strings.Contains(err.Error(), other.URL+"/login") {
		t.Errorf("redirect to another origin: err = %v, want an error naming %s/login", err, other.URL)
	}
	if strings.Contains(err.Error(), "session=1") {
		t.Errorf("the Location's query is quoted: %v", err)
	}
	if n := otherHits.Load(); n != 0 {
		t.Errorf("the other server received %d requests", n)
	}
}

// TestRedirectPolicyOverridesTheCallers: a caller's HTTPClient that would
// follow every redirect does not take the registration elsewhere.
func TestRedirectPolicyOverridesTheCallers(t *testing.T) {
	other, otherHits := counting(t)
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/TPOSL", http.StatusPermanentRedirect)
	}))
	defer first.Close()
	follows := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	c, err := tposl.New(tposl.Config{URL: first.URL + "/TPOSL", HTTPClient: follows})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(context.Background(), buildParams(t)); err == nil || otherHits.Load() != 0 {
		t.Errorf("err %v, the other server received %d requests", err, otherHits.Load())
	}
}
