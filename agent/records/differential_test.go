package records_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/internal/testrig/legacyrecords"
)

// The validator must stay exactly as strict as the first one (token by
// token through json.Decoder): the same inputs accepted with the same
// canonical column and key, the same inputs rejected with the same error
// text and field. These fuzzers compare the two on every input; their
// seeds include every fuzz seed of this package and of the local API.

type normalizer func([]byte) (json.RawMessage, string, error)

func agree(t *testing.T, name string, now, first normalizer, raw []byte) {
	t.Helper()
	col, key, err := now(raw)
	col0, key0, err0 := first(raw)
	if fmt.Sprint(err) != fmt.Sprint(err0) || !bytes.Equal(col, col0) || key != key0 {
		t.Fatalf("%s(%q):\n now   %s %q %v\n first %s %q %v", name, raw, col, key, err, col0, key0, err0)
	}
	var fe, fe0 *records.FieldError
	if (err != nil) && (!asField(err, &fe) || !asField(err0, &fe0) || fe.Field != fe0.Field) {
		t.Fatalf("%s(%q): fields differ: %v / %v", name, raw, err, err0)
	}
}

func asField(err error, fe **records.FieldError) bool {
	f, ok := err.(*records.FieldError)
	*fe = f
	return ok
}

// seeds are tricky inputs for both validators.
var seeds = []string{
	`{}`, ` { } `, `{"id":1}`, `{"id":"0042"}`, `{"id":0}`, `{"id":-1}`, `{"id":1.0}`, `{"id":1e2}`, `{"id":01}`,
	`{"id":""}`, `{"id":"","integration_id":"E1"}`, `{"integration_id":" E1"}`, `{"integration_id":""}`,
	`{"id":5,"note":null}`, `{"id":1,"balance":"1.260,50"}`, `{"id":1,"price":1260.5}`, `{"id":1,"price":-0}`,
	`{"id":1,"status":0}`, `{"id":1,"status":"2"}`, `{"id":1,"status":true}`, `{"id":1,"note":false}`,
	`{"id":1,"note":[]}`, `{"id":1,"note":{}}`, `{"id":1,}`, `{,}`, `{"id":1 "note":""}`, `{"id":1}x`, `{"id":1}{}`,
	`{"id":1}` + "\n\t ", "\xef\xbb\xbf{\"id\":1}", `{"id":1,"note":"a\"b\\c\/d\b\f\n\r\t"}`,
	`{"id":1,"note":"\u00e7\u011f\u0130"}`, `{"id":1,"note":"\ud83d\ude00"}`, `{"id":1,"note":"\ud83d"}`,
	`{"id":1,"note":"\ude00"}`, `{"id":1,"note":"\ud83d\u0041"}`, `{"id":1,"note":"\u0000"}`, `{"id":1,"note":"\u001f"}`,
	`{"id":1,"note":"\x"}`, `{"id":1,"note":"\u12"}`, "{\"id\":1,\"note\":\"a\x01b\"}", "{\"id\":1,\"note\":\"\x7f\"}",
	"{\"id\":1,\"note\":\"\u2028\u2029<>&\"}", `{"i\u0064":1}`, `{"id":1,"id":2}`, `{"id":1,"note":null,"note":null}`,
	`{"balanse":"1"}`, `{"id":1,"kasafisi_created_in":"2025-05-23 00:00:00"}`, `{"id":1,"kasafisi_created_in":"2025-5-23"}`,
	`{"id":1,"kasafisi_created_in":""}`, `{"id":1,"kasafisi_created_in":1}`, `{"id":1,"price":""}`, `{"id":1,"price":" "}`,
	`{"id":1,"price":"1.260"}`, `{"id":1,"price":1e31}`, `{"id":1,"price":1.005}`, `[]`, `"x"`, `null`, ``, `{`, `{"id"`,
	`{"id":`, `{"id":1`, `{"id":-}`, `{"id":1.}`, `{"id":1e}`, `{"id":1E+2}`, `{"id":9223372036854775808}`,
	`{"integration_id":"1","code":"ÇĞİ","created_in":"2025-01-01 10:00:00"}`, `{"integration_id":"1","code":""}`,
	`{"integration_id":"1"}`, `{"code":"X"}`, `{"integration_id":"1 ","code":"X"}`, `{"integration_id":"1","code":"X","typecode":7}`,
	`{"id":1,"note":"` + strings.Repeat("ş", 1001) + `"}`, `{"id":1,"note":"` + strings.Repeat("a", 70000) + `"}`,
	"{\"id\":1,\"note\":\"\xff\"}", `{"id" : 1 , "note" : "x" }`, "{\r\n\"id\":1}",
}

func addSeeds(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	// The spec examples and the stored corpora of the other fuzzers: every
	// quoted []byte or string argument of a "go test fuzz v1" file.
	for _, dir := range []string{"testdata", filepath.Join("..", "localapi", "testdata")} {
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			if strings.HasSuffix(path, ".json") {
				f.Add(b)
				return nil
			}
			for _, line := range strings.Split(string(b), "\n") {
				line = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(line, "[]byte("), "string("), ")")
				if v, err := strconv.Unquote(line); err == nil {
					f.Add([]byte(v))
				}
			}
			return nil
		})
	}
}

func FuzzKasaSameAsFirst(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		agree(t, "NormalizeKasa", records.NormalizeKasa, legacyrecords.NormalizeKasa, raw)
	})
}

func FuzzSpecialCodeSameAsFirst(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		agree(t, "NormalizeSpecialCode", records.NormalizeSpecialCode, legacyrecords.NormalizeSpecialCode, raw)
	})
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b\\c", "\x00\x1f\b\f\n\r\t", "\u2028\u2029<>&", "\xff\xfe", "Şişli Çağrı"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, html := range []bool{false, true} {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(html)
			enc.Encode(s)
			want := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
			if got := records.AppendJSONString(nil, s, html); !bytes.Equal(got, want) {
				t.Fatalf("AppendJSONString(%q, %v) = %s, want %s", s, html, got, want)
			}
		}
	})
}
