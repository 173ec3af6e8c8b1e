// Package textsafe makes text from outside the agent — a server's error
// message, a licence field, a page title — safe to show: control
// characters that a terminal would act on (ANSI/OSC escape sequences, C0
// and C1 controls, bidirectional overrides) are removed, and configured
// secrets a server echoed back are replaced. Text from servers is data:
// it may say anything, but it never moves the cursor, sets a window
// title, writes a hyperlink or shows a password.
package textsafe

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Clean returns s on one line: escape sequences and control characters
// removed, line breaks and tabs turned into a space.
func Clean(s string) string { return clean(s, false) }

// CleanLines is Clean that keeps line breaks (\n) and tabs.
func CleanLines(s string) string { return clean(s, true) }

// Safe reports whether s has nothing for Clean to remove.
func Safe(s string) bool { return clean(s, true) == s }

const esc = 0x1b

func clean(s string, lines bool) string {
	if plain(s, lines) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			i++ // invalid UTF-8: dropped
		case r == esc:
			i = skipEscape(s, i+1)
		case r == 0x9b: // C1 CSI
			i = skipCSI(s, i+size)
		case r == 0x90 || r == 0x98 || r == 0x9d || r == 0x9e || r == 0x9f: // C1 DCS, SOS, OSC, PM, APC
			i = skipString(s, i+size)
		case r == '\n' || r == '\t':
			if lines {
				b.WriteRune(r)
			} else {
				b.WriteByte(' ')
			}
			i += size
		case r == '\r':
			if !lines {
				b.WriteByte(' ')
			}
			i += size
		case control(r):
			i += size
		default:
			b.WriteString(s[i : i+size])
			i += size
		}
	}
	return b.String()
}

// plain is the fast path: nothing to remove.
func plain(s string, lines bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			if lines && (c == '\n' || c == '\t') {
				continue
			}
			return false
		}
		if c >= 0x80 {
			// Leave the rune checks to the slow path.
			for _, r := range s[i:] {
				if r == utf8.RuneError || control(r) || r == '\r' || (!lines && (r == '\n' || r == '\t')) {
					return false
				}
			}
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

// control: C0 (but \n \t, handled by the caller), DEL, C1, and the
// bidirectional controls that reorder what a reader sees.
func control(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f:
		return true
	case r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
		return true
	}
	return false
}

// skipEscape skips what follows an ESC at i: a CSI, a control string
// (OSC, DCS, SOS, PM, APC) or a short escape.
func skipEscape(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '[':
		return skipCSI(s, i+1)
	case ']', 'P', 'X', '^', '_':
		return skipString(s, i+1)
	}
	// nF: intermediates 0x20–0x2F, then one final 0x30–0x7E.
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
		i++
	}
	if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipCSI skips parameters 0x30–0x3F, intermediates 0x20–0x2F and the
// final byte 0x40–0x7E.
func skipCSI(s string, i int) int {
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x3f {
		i++
	}
	if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipString skips a control string up to its terminator: BEL, ESC \ or
// the C1 ST (U+009C); an unterminated one runs to the end.
func skipString(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == 0x07:
			return i + 1
		case s[i] == esc:
			if i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
			return i + 1
		case strings.HasPrefix(s[i:], "\u009c"):
			return i + len("\u009c")
		}
		i++
	}
	return i
}

// Redacted replaces a secret.
const Redacted = "[redacted]"

// MinSecret is the shortest secret that is replaced; shorter ones would
// garble ordinary words and protect nothing.
const MinSecret = 4

// Secrets replaces configured secrets in text.
type Secrets struct{ forms []string }

// NewSecrets keeps the secrets of at least MinSecret bytes, each also in
// the forms a server may echo it: JSON-escaped, URL query- and
// path-escaped.
func NewSecrets(secrets ...string) Secrets {
	var s Secrets
	seen := map[string]bool{}
	add := func(f string) {
		if len(f) >= MinSecret && !seen[f] {
			seen[f] = true
			s.forms = append(s.forms, f)
		}
	}
	for _, sec := range secrets {
		if len(sec) < MinSecret {
			continue
		}
		add(sec)
		if q, err := json.Marshal(sec); err == nil {
			add(string(q[1 : len(q)-1]))
		}
		add(url.QueryEscape(sec))
		add(url.PathEscape(sec))
	}
	// Longest first: a secret that contains another is replaced whole.
	for i := 1; i < len(s.forms); i++ {
		for j := i; j > 0 && len(s.forms[j]) > len(s.forms[j-1]); j-- {
			s.forms[j], s.forms[j-1] = s.forms[j-1], s.forms[j]
		}
	}
	return s
}

// Replace returns text with every secret replaced by Redacted.
func (s Secrets) Replace(text string) string {
	for _, f := range s.forms {
		if strings.Contains(text, f) {
			text = strings.ReplaceAll(text, f, Redacted)
		}
	}
	return text
}

// Text is Replace after Clean: a server's text, ready for status, a
// terminal or a log. The secrets are replaced after the control
// characters are gone, so that none hides a secret from the match.
func (s Secrets) Text(text string) string { return s.Replace(Clean(text)) }

// Strings applies f to every exported string in the value v points to —
// fields, slice and array elements, map keys and values, through pointers
// and interfaces — and returns nothing: v is changed in place, but maps,
// slices and pointed-to structs are copied first, so that a snapshot that
// shares them with the state it was taken from leaves that state alone.
func Strings(v any, f func(string) string) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return
	}
	walk(rv.Elem(), f, 0)
}

func walk(v reflect.Value, f func(string) string, depth int) {
	if depth > 32 || !v.CanSet() && v.Kind() != reflect.Struct {
		return
	}
	switch v.Kind() {
	case reflect.String:
		if s := v.String(); s != "" {
			v.SetString(f(s))
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				walk(v.Field(i), f, depth+1)
			}
		}
	case reflect.Pointer:
		if v.IsNil() || v.Elem().Kind() != reflect.Struct && v.Elem().Kind() != reflect.String {
			return
		}
		cp := reflect.New(v.Elem().Type())
		cp.Elem().Set(v.Elem())
		walk(cp.Elem(), f, depth+1)
		v.Set(cp)
	case reflect.Slice:
		if v.IsNil() || !hasStrings(v.Type().Elem(), 0) {
			return
		}
		cp := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(cp, v)
		for i := 0; i < cp.Len(); i++ {
			walk(cp.Index(i), f, depth+1)
		}
		v.Set(cp)
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			walk(v.Index(i), f, depth+1)
		}
	case reflect.Map:
		if v.IsNil() || !hasStrings(v.Type().Key(), 0) && !hasStrings(v.Type().Elem(), 0) {
			return
		}
		cp := reflect.MakeMapWithSize(v.Type(), v.Len())
		it := v.MapRange()
		for it.Next() {
			k := reflect.New(v.Type().Key()).Elem()
			k.Set(it.Key())
			walk(k, f, depth+1)
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(it.Value())
			walk(e, f, depth+1)
			cp.SetMapIndex(k, e)
		}
		v.Set(cp)
	case reflect.Interface:
		if v.IsNil() {
			return
		}
		e := reflect.New(v.Elem().Type()).Elem()
		e.Set(v.Elem())
		walk(e, f, depth+1)
		v.Set(e)
	}
}

// hasStrings reports whether a value of type t can hold a string.
func hasStrings(t reflect.Type, depth int) bool {
	if depth > 8 {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Interface:
		return true
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return hasStrings(t.Elem(), depth+1)
	case reflect.Map:
		return hasStrings(t.Key(), depth+1) || hasStrings(t.Elem(), depth+1)
	case reflect.Struct:
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).IsExported() && hasStrings(t.Field(i).Type, depth+1) {
				return true
			}
		}
	}
	return false
}
