package textsafe

import (
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain Türkçe ş ğ ı İ":                                 "plain Türkçe ş ğ ı İ",
		"\x1b[31mred\x1b[0m":                                   "red",
		"\x1b[2J\x1b[Hcleared":                                 "cleared",
		"\x1b]0;owned title\x07after":                          "after",
		"\x1b]8;;https://evil.example\x1b\\link\x1b]8;;\x1b\\": "link",
		"\x1bPdcs string\x1b\\x":                               "x",
		"a\u009b31mb":                                          "ab",
		"a\u009d0;t\u009cb":                                    "ab",
		"bell\x07 back\x08space\x00nul\x7fdel":                 "bell backspacenuldel",
		"line1\nline2\r\n\ttab":                                "line1 line2   tab",
		"bidi \u202eevil\u202c":                                "bidi evil",
		"bad \xff\xfe utf8":                                    "bad  utf8",
		"unterminated \x1b]0;title":                            "unterminated ",
		"lone esc at end \x1b":                                 "lone esc at end ",
		"esc(B charset":                                        "esc(B charset",
		"\x1b(Bcharset":                                        "charset",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
	if got := CleanLines("a\x1b[1m\nb\tc\r"); got != "a\nb\tc" {
		t.Errorf("CleanLines = %q", got)
	}
	if !Safe("ok\nşğ") || Safe("x\x1b[0m") {
		t.Error("Safe")
	}
}

func TestSecrets(t *testing.T) {
	s := NewSecrets("pw-Şifre/9 &x", "abc", "", "api-key-123456")
	for in, want := range map[string]string{
		"your password pw-Şifre/9 &x is wrong": "your password [redacted] is wrong",
		`{"p":"pw-Şifre/9 &x"}`:                `{"p":"[redacted]"}`,
		"?p=pw-%C5%9Eifre%2F9+%26x":            "?p=[redacted]",
		"abc is too short to hide":             "abc is too short to hide",
		"key api-key-123456":                   "key [redacted]",
	} {
		if got := s.Replace(in); got != want {
			t.Errorf("Replace(%q) = %q, want %q", in, got, want)
		}
	}
	// An escape sequence inside the secret does not hide it.
	if got := s.Text("pw-Şifre/9\x1b[0m &x"); strings.Contains(got, "Şifre") {
		t.Errorf("Text = %q", got)
	}
}

func TestStrings(t *testing.T) {
	type inner struct {
		A      string
		hidden string
	}
	type outer struct {
		S   string
		P   *inner
		L   []string
		M   map[string]string
		I   any
		N   int
		Arr [2]string
	}
	shared := map[string]string{"k\x1b[0m": "v\x1b[0m"}
	list := []string{"x\x07"}
	in := &inner{A: "a\x1b[1m", hidden: "h\x1b"}
	v := outer{S: "s\x1b[1m", P: in, L: list, M: shared, I: "i\x1b[1m", N: 3, Arr: [2]string{"\x1b[1mq", ""}}
	Strings(&v, Clean)
	if v.S != "s" || v.P.A != "a" || v.L[0] != "x" || v.M["k"] != "v" || v.I != "i" || v.Arr[0] != "q" || v.P.hidden != "h\x1b" {
		t.Errorf("%+v %+v", v, *v.P)
	}
	// What it was copied from is unchanged.
	if in.A != "a\x1b[1m" || list[0] != "x\x07" || shared["k\x1b[0m"] != "v\x1b[0m" {
		t.Errorf("the original changed: %q %q %q", in.A, list, shared)
	}
}

func BenchmarkCleanPlain(b *testing.B) {
	s := strings.Repeat("the licence server refused the registration (code 12): Geçersiz kullanıcı ", 4)
	for b.Loop() {
		Clean(s)
	}
}
