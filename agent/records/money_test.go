package records

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestNormalizeMoney(t *testing.T) {
	ok := []struct {
		in   any
		want string
	}{
		{"1260.5", "1260.50"},
		{"1.260,50", "1260.50"},
		{json.Number("1260.5"), "1260.50"},
		{1260.5, "1260.50"},
		{"1260", "1260.00"},
		{"1260,5", "1260.50"},
		{"1,260.50", "1260.50"},
		{"1.260.000", "1260000.00"},
		{"1.260.000,05", "1260000.05"},
		{"12,345,678.9", "12345678.90"},
		{" 100 ", "100.00"},
		{"-5,25", "-5.25"},
		{"+7", "7.00"},
		{"-0", "0.00"},
		{"-0,00", "0.00"},
		{"0", "0.00"},
		{"007.10", "7.10"},
		{"1.2500", "1.25"},
		{"1234.560", "1234.56"},
		{"0.1", "0.10"},
		{json.Number("0"), "0.00"},
		{json.Number("-12.30"), "-12.30"},
		{json.Number("1.2605e3"), "1260.50"},
		{json.Number("126050E-2"), "1260.50"},
		{json.Number("1e2"), "100.00"},
		{json.Number("5e-1"), "0.50"},
		{0.1, "0.10"},
		{float32(2.5), "2.50"},
		{100, "100.00"},
		{int64(-3), "-3.00"},
		{uint8(9), "9.00"},
		{"999999999999999", "999999999999999.00"},
	}
	for _, tc := range ok {
		got, err := NormalizeMoney(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeMoney(%#v) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	bad := []any{
		"", "  ", "abc", "12a", "1.260", "1,260", "12.345", "1.2.3", "1,2,3",
		"1.260,50,1", "1.26.0", "1,260.5.0", ".5", "5.", "-", "+", "--5", "1 260",
		"0.125", "0.125000", "1.005", "1e3", "1260.50 TL", "₺5", "١٢٣", "1,5.3", "01.260,00",
		"1234567890123456", // too large
		json.Number("01"), json.Number("1.2.3"), json.Number("1e99"), json.Number("1.005"),
		json.Number(""), json.Number("-"), json.Number("1e"), json.Number(".5"),
		nil, true, []byte("5"), map[string]any{},
	}
	for _, in := range bad {
		got, err := NormalizeMoney(in)
		if err == nil {
			t.Errorf("NormalizeMoney(%#v) = %q, want an error", in, got)
			continue
		}
		if !errors.Is(err, ErrMoney) {
			t.Errorf("NormalizeMoney(%#v): error %v does not wrap ErrMoney", in, err)
		}
	}
}

// Every accepted string must survive a second pass unchanged.
func FuzzNormalizeMoney(f *testing.F) {
	for _, s := range []string{"1260.5", "1.260,50", "-0,5", "1e3", "12,345,678.9", "0.125"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeMoney(s)
		if err != nil {
			return
		}
		again, err := NormalizeMoney(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, got, again, err)
		}
		if n, err := NormalizeMoney(json.Number(got)); err != nil || n != got {
			t.Fatalf("output %q is not a JSON number of the same value: %q, %v", got, n, err)
		}
	})
}
