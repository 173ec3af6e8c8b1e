package oduyo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRedirectToAnotherServerReceivesNothing: kept for
// Ödüyo (which already refused redirects): a 307/308 (which would resend
// the body) or 301/302 from the login or from a record's POST, to another
// server on another port, is an error naming the Location; the other
// server receives nothing — no record, no api key, no password, no session.
func TestRedirectToAnotherServerReceivesNothing(t *testing.T) {
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		fmt.Fprint(w, `{"status": true, "data": "stolen-session"}`)
	}))
	defer other.Close()
	for _, code := range []int{301, 302, 307, 308} {
		for _, at := range []string{"login", "record"} {
			t.Run(fmt.Sprintf("%d at %s", code, at), func(t *testing.T) {
				first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if at == "record" && strings.HasSuffix(r.URL.Path, "/ws/login") {
						fmt.Fprint(w, `{"status": true, "data": "session-0123456789"}`)
						return
					}
					http.Redirect(w, r, other.URL+r.URL.Path, code)
				}))
				defer first.Close()
				c, err := New(Config{BaseURL: first.URL, APIKey: "api-key-secret", Username: "erp", Password: "pw-secret-9"})
				if err != nil {
					t.Fatal(err)
				}
				if at == "login" {
					err = c.Login(context.Background())
				} else {
					err = c.UpdateKasa(context.Background(), "k1", json.RawMessage(`{"integration_id":"K1"}`))
				}
				oe := wantClass(t, err, Transient, code)
				if !strings.Contains(oe.Error(), other.URL) || !oe.Foreign {
					t.Errorf("error does not name the Location %s: %v", other.URL, err)
				}
				for _, secret := range []string{"api-key-secret", "pw-secret-9", "session-0123456789"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("a secret is in the error: %v", err)
					}
				}
				if n := otherHits.Load(); n != 0 {
					t.Fatalf("the other server received %d requests", n)
				}
			})
		}
	}
}
