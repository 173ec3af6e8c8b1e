package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeKasaSpecExample(t *testing.T) {
	col, key, err := NormalizeKasa(specExample(t, "kasa-spec-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if key != "kasa:id:2" {
		t.Errorf("key = %q", key)
	}
	want := `{"id":2,"integration_id":"2","status":"1","key1":"21","key2":"1","note":"--","price":"100.00","price1":"120.00","price2":"0.00","balance":"1260.00","balance1":"1566.00","balance2":"","description":"MERKEZ KASA","space2":"","space3":"","space4":"","space5":"","kasafisi_created_in":"2025-05-23 00:00:00","kasafisi_updated_in":"2025-05-23 00:00:00"}`
	if string(col) != want {
		t.Errorf("column\n got %s\nwant %s", col, want)
	}
	// Canonical: normalising the output again changes nothing.
	again, key2, err := NormalizeKasa(col)
	if err != nil || !bytes.Equal(again, col) || key2 != key {
		t.Errorf("second pass: %s %q %v", again, key2, err)
	}
}

func TestNormalizeSpecialCodeSpecExample(t *testing.T) {
	col, key, err := NormalizeSpecialCode(specExample(t, "special-code-spec-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	if key != "special_code:1111111" {
		t.Errorf("key = %q", key)
	}
	var m map[string]string
	if err := json.Unmarshal(col, &m); err != nil {
		t.Fatal(err)
	}
	if m["code"] != "TESTCODE" || m["typecode"] != "26" || m["special_updated_in"] != "2025-05-23 00:00:00" || len(m) != 14 {
		t.Errorf("column %s", col)
	}
}

func TestNormalizeKeysAndValues(t *testing.T) {
	tests := []struct {
		name, in, key, contains string
	}{
		{"id as digit string", `{"id":"0042"}`, "kasa:id:42", `"id":42`},
		{"integration id only", `{"integration_id":"ERP-7"}`, "kasa:int:ERP-7", `"integration_id":"ERP-7"`},
		{"empty id falls back", `{"id":"","integration_id":"E1"}`, "kasa:int:E1", `{"integration_id":"E1"}`},
		{"null is absent", `{"id":5,"note":null}`, "kasa:id:5", `{"id":5}`},
		{"turkish money comma", `{"id":1,"balance":"1.260,50"}`, "kasa:id:1", `"balance":"1260.50"`},
		{"number money", `{"id":1,"price":1260.5}`, "kasa:id:1", `"price":"1260.50"`},
		{"numeric status", `{"id":1,"status":0}`, "kasa:id:1", `"status":"0"`},
		{"turkish text intact", `{"id":1,"description":"Kadıköy ŞUBE ğüşıöçİ <&>"}`, "kasa:id:1", `"description":"Kadıköy ŞUBE ğüşıöçİ <&>"`},
		{"escaped turkish", `{"id":1,"note":"\u015eube \ud83d\ude00"}`, "kasa:id:1", `"note":"Şube 😀"`},
		{"bom", "\xef\xbb\xbf{\"id\":3}", "kasa:id:3", `{"id":3}`},
		{"newline in note", `{"id":1,"note":"a\nb"}`, "kasa:id:1", `"note":"a\nb"`},
		{"key order", `{"note":"x","id":9}`, "kasa:id:9", `{"id":9,"note":"x"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			col, key, err := NormalizeKasa([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if key != tc.key || !strings.Contains(string(col), tc.contains) {
				t.Errorf("got %s %q; want key %q containing %s", col, key, tc.key, tc.contains)
			}
		})
	}
}

func TestNormalizeRejects(t *testing.T) {
	long := strings.Repeat("ş", MaxTextRunes+1)
	tests := []struct {
		name, in, field string
		special         bool
	}{
		{"not object", `[1]`, "column", false},
		{"string", `"x"`, "column", false},
		{"empty", ``, "column", false},
		{"truncated", `{"id":1`, "column", false},
		{"trailing", `{"id":1} {}`, "column", false},
		{"invalid utf8", "{\"id\":1,\"note\":\"\xff\xfe\"}", "column", false},
		{"lone surrogate", `{"id":1,"note":"\ud800x"}`, "column", false},
		{"lone low surrogate", `{"id":1,"note":"\udc00"}`, "column", false},
		{"unknown field", `{"id":1,"nte":"x"}`, "nte", false},
		{"wrong case", `{"ID":1}`, "ID", false},
		{"space1 not in kasa", `{"id":1,"space1":""}`, "space1", false},
		{"duplicate", `{"id":1,"id":2}`, "id", false},
		{"no id", `{"note":"x"}`, "id", false},
		{"id float", `{"id":2.5}`, "id", false},
		{"id negative", `{"id":-2}`, "id", false},
		{"id zero", `{"id":0}`, "id", false},
		{"id letters", `{"id":"A1"}`, "id", false},
		{"id bool", `{"id":true}`, "id", false},
		{"id huge", `{"id":99999999999999999999}`, "id", false},
		{"integration id number", `{"integration_id":7}`, "integration_id", false},
		{"integration id spaces", `{"integration_id":" 7"}`, "integration_id", false},
		{"status 2", `{"id":1,"status":"2"}`, "status", false},
		{"status bool", `{"id":1,"status":true}`, "status", false},
		{"date format", `{"id":1,"kasafisi_created_in":"23.05.2025"}`, "kasafisi_created_in", false},
		{"date invalid", `{"id":1,"kasafisi_created_in":"2025-02-30 00:00:00"}`, "kasafisi_created_in", false},
		{"date fraction", `{"id":1,"kasafisi_created_in":"2025-05-23 00:00:00.5"}`, "kasafisi_created_in", false},
		{"date number", `{"id":1,"kasafisi_updated_in":20250523}`, "kasafisi_updated_in", false},
		{"money word", `{"id":1,"price":"yüz"}`, "price", false},
		{"money bool", `{"id":1,"price":true}`, "price", false},
		{"money ambiguous", `{"id":1,"balance":"1.260"}`, "balance", false},
		{"money rounding", `{"id":1,"balance":1.005}`, "balance", false},
		{"text number", `{"id":1,"note":5}`, "note", false},
		{"text too long", `{"id":1,"note":"` + long + `"}`, "note", false},
		{"control char", `{"id":1,"note":"a\u0000b"}`, "note", false},
		{"nested", `{"id":1,"note":{"a":{"b":1}}}`, "note", false},
		{"array", `{"id":1,"note":[1,2]}`, "note", false},
		{"deep", `{"id":1,"note":` + strings.Repeat("[", 10000) + `}`, "note", false},
		{"sc no code", `{"integration_id":"1"}`, "code", true},
		{"sc empty code", `{"integration_id":"1","code":""}`, "code", true},
		{"sc no integration id", `{"code":"X"}`, "integration_id", true},
		{"sc id not allowed", `{"id":1,"integration_id":"1","code":"X"}`, "id", true},
		{"sc kasa date", `{"integration_id":"1","code":"X","kasafisi_created_in":""}`, "kasafisi_created_in", true},
		{"sc status", `{"integration_id":"1","code":"X","status":"aktif"}`, "status", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			norm := NormalizeKasa
			if tc.special {
				norm = NormalizeSpecialCode
			}
			col, key, err := norm([]byte(tc.in))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %s %q %v; want a *FieldError", col, key, err)
			}
			if fe.Field != tc.field {
				t.Errorf("field = %q (%v), want %q", fe.Field, err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), "field "+tc.field+": ") || !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("error %q", err)
			}
		})
	}
}

func TestNormalizeTooLarge(t *testing.T) {
	in := `{"id":1,"note":"` + strings.Repeat("a", MaxRecordBytes) + `"}`
	_, _, err := NormalizeKasa([]byte(in))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "column" {
		t.Fatalf("err = %v", err)
	}
}

func FuzzNormalizeKasa(f *testing.F) {
	f.Add(specExample(f, "kasa-spec-example.json"))
	f.Add([]byte(`{"integration_id":"Kadıköy","balance":"1.260,50","status":0}`))
	f.Add([]byte(`{"id":"7","note":"\ud83d\ude00","price":1.2605e3}`))
	f.Add([]byte("{\"id\":1,\"note\":\"\xff\"}"))
	f.Add([]byte(`{"id":1,"id":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		col, key, err := NormalizeKasa(raw)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			return
		}
		if !json.Valid(col) || !utf8.Valid(col) {
			t.Fatalf("invalid output %q", col)
		}
		if !strings.HasPrefix(key, "kasa:id:") && !strings.HasPrefix(key, "kasa:int:") {
			t.Fatalf("key %q", key)
		}
		again, key2, err := NormalizeKasa(col)
		if err != nil || !bytes.Equal(again, col) || key2 != key {
			t.Fatalf("not canonical: %s -> %s %q %v", col, again, key2, err)
		}
	})
}

func FuzzNormalizeSpecialCode(f *testing.F) {
	f.Add(specExample(f, "special-code-spec-example.json"))
	f.Add([]byte(`{"integration_id":"1","code":"ÇĞİ","created_in":"2025-01-01 10:00:00"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		col, key, err := NormalizeSpecialCode(raw)
		if err != nil {
			return
		}
		again, key2, err := NormalizeSpecialCode(col)
		if err != nil || !bytes.Equal(again, col) || key2 != key || !strings.HasPrefix(key, "special_code:") {
			t.Fatalf("not canonical: %s -> %s %q %v", col, again, key2, err)
		}
	})
}

// specExample is an example record from Ödüyo's API documentation.
func specExample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKasaNames(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"id":960,"integration_id":"ERP-960"}`, "[kasa:id:960 kasa:int:ERP-960]"},
		{`{"integration_id":"ERP-960"}`, "[kasa:int:ERP-960]"},
		{`{"id":"0960"}`, "[kasa:id:960]"},
	} {
		col, key, err := NormalizeKasa([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		names := KasaNames(col)
		if fmt.Sprint(names) != tc.want || names[0] != key {
			t.Errorf("%s: names %v key %s, want %s with the key first", tc.in, names, key, tc.want)
		}
	}
}
