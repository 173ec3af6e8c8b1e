package localapi_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestBearerScheme: the scheme name is case-insensitive (RFC 7235 §2.1),
// the token itself is compared exactly.
func TestBearerScheme(t *testing.T) {
	srv, _ := newServer(t, 0)
	for _, c := range []struct {
		auth string
		want int
	}{
		{"Bearer " + token, 200},
		{"bearer " + token, 200},
		{"BEARER " + token, 200},
		{"bEaReR " + token, 200},
		{"Bearer   " + token + "  ", 200},
		{"  Bearer " + token, 200},
		{"Bearer " + strings.ToUpper(token), 401},
		{"Bearer" + token, 401},
		{"Bearers " + token, 401},
		{"Basic " + token, 401},
		{token, 401},
		{"Bearer", 401},
		{"bearer ", 401},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/license", nil)
		req.Header.Set("Authorization", c.auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: %d, want %d", c.auth, resp.StatusCode, c.want)
		}
	}
}
