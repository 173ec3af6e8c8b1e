package oduyo

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// FuzzVerdict: whatever the server sends, a record is accepted only for
// 200/201/202 with a JSON boolean "status": true, refused (Permanent) only
// for Ödüyo's JSON, and anything else leaves it waiting (Transient).
func FuzzVerdict(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{200, `{"status":true}`}, {201, `{"status": true, "data": "ok"}`}, {404, `{"status":false}`},
		{200, `{"status":"true"}`}, {200, `<html>`}, {302, ``}, {404, `<html>404</html>`}, {400, `{"error":"x"}`},
		{500, `{"status":true}`}, {204, ``}, {200, `{"status":1}`}, {200, "\xef\xbb\xbf{\"status\":true}"},
	} {
		f.Add(s.status, []byte(s.body))
	}
	c, err := New(Config{BaseURL: "http://127.0.0.1:1", APIKey: "k-secret", Username: "u", Password: "p-secret"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		err := c.verdict("update kasa", status, http.Header{}, body)
		var obj map[string]json.RawMessage
		b := bytes.TrimSpace(bytes.TrimPrefix(body, utf8BOM))
		isJSON := json.Unmarshal(b, &obj) == nil && obj != nil
		st := ""
		if isJSON {
			st = string(bytes.TrimSpace(obj["status"]))
		}
		oduyos := st == "true" || st == "false"
		if err == nil {
			if st != "true" || (status != 200 && status != 201 && status != 202) {
				t.Fatalf("accepted %d %q", status, body)
			}
			return
		}
		class, _ := Classify(err)
		if class == Permanent && !oduyos {
			t.Fatalf("refused on an answer that is not Ödüyo's: %d %q: %v", status, body, err)
		}
		if class == Auth {
			t.Fatalf("auth class from a record answer: %v", err)
		}
		if len(err.Error()) > 600 {
			t.Fatalf("error text too long: %d bytes", len(err.Error()))
		}
	})
}

// FuzzListRows: the lookup's reading of a list answer never panics and
// finds a row only when it carries the integration_id asked for.
func FuzzListRows(f *testing.F) {
	f.Add([]byte(`[{"id":"1","integration_id":"S-1","code":"A"}]`), "S-1")
	f.Add([]byte(`{"id":2,"integration_id":7}`), "7")
	f.Add([]byte(`"no rows"`), "S-1")
	f.Fuzz(func(t *testing.T, data []byte, intID string) {
		for _, row := range listRows(data) {
			if scalarString(row["integration_id"]) == intID && rowMatches(row, map[string]string{}) {
				if !bytes.Contains(data, []byte(intID)) && intID != "" {
					// A number may be written differently (1e0); that is
					// the only way to match without the text.
					var n json.Number
					if json.Unmarshal(row["integration_id"], &n) != nil {
						t.Fatalf("matched %q in %q", intID, data)
					}
				}
			}
		}
	})
}
