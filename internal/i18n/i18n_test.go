package i18n

import (
	"testing"
	"time"
)

func TestFromAcceptLanguage(t *testing.T) {
	for h, want := range map[string]Lang{
		"": TR, "tr": TR, "tr-TR,tr;q=0.9": TR, "en": EN, "en-US,en;q=0.9": EN, "en-US,en;q=0.9,tr;q=0.8": EN,
		"tr-TR,tr;q=0.9,en-US;q=0.8,en;q=0.7": TR, "de-DE,de;q=0.9": TR, "de,en;q=0.5": EN, "en;q=0.5,tr;q=0.6": TR,
		"en;q=0,tr;q=0.1": TR, "en;q=bogus": TR, "*": TR, "EN-gb": EN, "tr;q=0.9,en": EN,
	} {
		if got := FromAcceptLanguage(h); got != want {
			t.Errorf("FromAcceptLanguage(%q) = %s, want %s", h, got, want)
		}
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		env    map[string]string
		system string
		want   Lang
	}{
		{nil, "", EN},
		{nil, "tr-TR", TR},
		{map[string]string{"LANG": "tr_TR.UTF-8"}, "", TR},
		{map[string]string{"LANG": "C"}, "tr-TR", EN},
		{map[string]string{"LANG": "tr_TR.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}, "", EN},
		{map[string]string{"LANG": "en_US.UTF-8", "LC_ALL": "tr_TR"}, "", TR},
		{map[string]string{"LANG": ""}, "tr-TR", TR},
		{map[string]string{"LANG": "de_DE.UTF-8"}, "", EN},
	}
	for _, tt := range tests {
		lookup := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
		if got := FromEnv(lookup, tt.system); got != tt.want {
			t.Errorf("FromEnv(%v, %q) = %s, want %s", tt.env, tt.system, got, tt.want)
		}
	}
}

func TestWords(t *testing.T) {
	cases := []struct{ got, want string }{
		{TR.Duration(45 * time.Second), "45 sn"},
		{EN.Duration(12 * time.Minute), "12 min"},
		{TR.Duration(3*time.Hour + 5*time.Minute), "3 sa 5 dk"},
		{EN.Duration(50 * time.Hour), "2 days 2 h"},
		{EN.Duration(48 * time.Hour), "2 days"},
		{EN.Days(1), "1 day"},
		{TR.Days(20), "20 gün"},
		{TR.Ago(90 * time.Second), "1 dk önce"},
		{TR.Date("2026-12-17"), "17.12.2026"},
		{EN.Date("2026-12-17"), "2026-12-17"},
		{TR.Date("bogus"), "bogus"},
		{TR.State("mismatch"), "Başka bir yazarkasaya kayıtlı"},
		{EN.State("whatever"), "Unknown (no answer from the licence server yet)"},
		{TR.Source("pos"), "POS programı bildirdi"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	for _, s := range []string{"tr", "TR", "tr_TR.UTF-8", "tr-TR"} {
		if l, ok := Parse(s); !ok || l != TR {
			t.Errorf("Parse(%q) = %s %v", s, l, ok)
		}
	}
	if _, ok := Parse("de"); ok {
		t.Error("Parse(de) accepted")
	}
}
