package records

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The fast path: one pass over a well-formed flat column object, no
// json.Decoder, no maps. It accepts exactly what parseColumn accepts and
// produces the same values; anything else — a syntax error, an unknown or
// duplicate key, a bad value, an escaped key, a lone surrogate — makes it
// give up, and parseColumn then runs to report the error in its own words.
// The differential fuzzers (fast against the first validator) prove the
// two agree.

// maxFields bounds the field lists (kasa has 19).
const maxFields = 32

// column holds the normalised values by field index.
type column struct {
	vals [maxFields]string
	set  uint32 // bit i: field i has a value (not null, not an empty id)
	seen uint32 // bit i: field i occurred
}

// fastParse parses raw into c. ok is false when raw is not a valid record
// of fields; the caller then asks parseColumn why.
func fastParse(raw []byte, fields []fieldSpec, c *column) (ok bool) {
	if len(raw) > MaxRecordBytes {
		return false
	}
	if len(raw) >= 3 && raw[0] == 0xef && raw[1] == 0xbb && raw[2] == 0xbf {
		raw = raw[3:]
	}
	if !utf8.Valid(raw) {
		return false
	}
	// One copy of the input: keys are compared and values kept as
	// substrings of it, without an allocation each.
	p := parser{b: string(raw)}
	p.ws()
	if !p.eat('{') {
		return false
	}
	p.ws()
	if p.eat('}') {
		return p.end()
	}
	for {
		p.ws()
		name, ok := p.plainKey()
		if !ok {
			return false
		}
		idx := -1
		for i := range fields {
			if fields[i].name == name {
				idx = i
				break
			}
		}
		if idx < 0 || c.seen&(1<<idx) != 0 {
			return false
		}
		c.seen |= 1 << idx
		p.ws()
		if !p.eat(':') {
			return false
		}
		p.ws()
		kind := fields[idx].kind
		var v, msg string
		isNull := false
		switch {
		case p.i >= len(p.b):
			return false
		case p.b[p.i] == '"':
			s, ok := p.str()
			if !ok {
				return false
			}
			v, msg = normalizeString(kind, s)
		case p.b[p.i] == 'n':
			if !p.lit("null") {
				return false
			}
			isNull = true
		case p.b[p.i] == '-' || (p.b[p.i] >= '0' && p.b[p.i] <= '9'):
			n, ok := p.num()
			if !ok {
				return false
			}
			v, msg = normalizeNumber(kind, n)
		default:
			return false // true, false, objects, arrays: rejected by parseColumn too
		}
		if msg != "" {
			return false
		}
		if !isNull && !(kind == kindID && v == "") {
			c.vals[idx] = v
			c.set |= 1 << idx
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if !p.eat('}') {
			return false
		}
		return p.end()
	}
}

type parser struct {
	b string
	i int
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) lit(s string) bool {
	if len(p.b)-p.i >= len(s) && p.b[p.i:p.i+len(s)] == s {
		p.i += len(s)
		return p.delim()
	}
	return false
}

// delim reports whether the byte after a literal or number may follow it.
func (p *parser) delim() bool {
	if p.i >= len(p.b) {
		return true
	}
	switch p.b[p.i] {
	case ' ', '\t', '\n', '\r', ',', '}':
		return true
	}
	return false
}

// end: only whitespace may follow the object.
func (p *parser) end() bool {
	p.ws()
	return p.i == len(p.b)
}

// plainKey reads a key without escapes (the known keys have none).
func (p *parser) plainKey() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			k := p.b[start:p.i]
			p.i++
			return k, true
		case c == '\\' || c < 0x20:
			return "", false
		}
		p.i++
	}
	return "", false
}

// str reads a string value, decoding escapes as encoding/json does; a
// lone surrogate escape fails (parseColumn rejects it).
func (p *parser) str() (string, bool) {
	p.i++ // the opening quote
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s, true
		}
		if c == '\\' {
			return p.strEscaped(start)
		}
		if c < 0x20 {
			return "", false
		}
		p.i++
	}
	return "", false
}

func (p *parser) strEscaped(start int) (string, bool) {
	out := make([]byte, 0, 2*(p.i-start)+16)
	out = append(out, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			return "", false
		}
		e := p.b[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4s(p.b, p.i)
			if !ok {
				return "", false
			}
			p.i += 4
			if r >= 0xD800 && r <= 0xDFFF {
				if r > 0xDBFF || p.i+6 > len(p.b) || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
					return "", false
				}
				lo, ok := hex4s(p.b, p.i+2)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return "", false
				}
				p.i += 6
				r = int(utf16.DecodeRune(rune(r), rune(lo)))
			}
			out = utf8.AppendRune(out, rune(r))
		default:
			return "", false
		}
	}
	return "", false
}

// num reads a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *parser) num() (string, bool) {
	start := p.i
	p.eat('-')
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	switch {
	case p.eat('0'):
	case digits() == 0:
		return "", false
	}
	if p.eat('.') && digits() == 0 {
		return "", false
	}
	if p.eat('e') || p.eat('E') {
		if !p.eat('+') {
			p.eat('-')
		}
		if digits() == 0 {
			return "", false
		}
	}
	if !p.delim() {
		return "", false
	}
	return p.b[start:p.i], true
}

// hex4s is hex4 on a string.
func hex4s(s string, at int) (int, bool) {
	if at+4 > len(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s[at:at+4], 16, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}

// fastKasa and fastSpecialCode are the fast paths of NormalizeKasa and
// NormalizeSpecialCode: ok is false for every input they reject.
func fastKasa(raw []byte) (col json.RawMessage, key string, ok bool) {
	var c column
	if !fastParse(raw, kasaFields, &c) {
		return nil, "", false
	}
	const id, intID = 0, 1 // indexes in kasaFields
	switch {
	case c.set&(1<<intID) != 0 && !trimmed(c.vals[intID]):
		return nil, "", false
	case c.set&(1<<id) != 0:
		key = "kasa:id:" + c.vals[id]
	case c.set&(1<<intID) != 0 && c.vals[intID] != "":
		key = "kasa:int:" + c.vals[intID]
	default:
		return nil, "", false
	}
	return appendColumn(make([]byte, 0, len(raw)+16), &c, kasaFields), key, true
}

func fastSpecialCode(raw []byte) (col json.RawMessage, key string, ok bool) {
	var c column
	if !fastParse(raw, specialCodeFields, &c) {
		return nil, "", false
	}
	const intID, code = 0, 1 // indexes in specialCodeFields
	for _, i := range []int{intID, code} {
		if c.set&(1<<i) == 0 || c.vals[i] == "" {
			return nil, "", false
		}
	}
	if !trimmed(c.vals[intID]) {
		return nil, "", false
	}
	return appendColumn(make([]byte, 0, len(raw)+16), &c, specialCodeFields), "special_code:" + c.vals[intID], true
}

func trimmed(s string) bool { return s == strings.TrimSpace(s) }

// appendColumn writes the canonical column of c: fields in spec order, id
// as a number, everything else as a string (encoding/json's escaping
// without the HTML escapes).
func appendColumn(dst []byte, c *column, fields []fieldSpec) []byte {
	dst = append(dst, '{')
	first := true
	for i, f := range fields {
		if c.set&(1<<i) == 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, f.name...)
		dst = append(dst, '"', ':')
		if f.kind == kindID {
			dst = append(dst, c.vals[i]...)
		} else {
			dst = AppendJSONString(dst, c.vals[i], false)
		}
	}
	return append(dst, '}')
}

// AppendJSONString appends s as a JSON string exactly as encoding/json
// writes it (with or without its HTML escapes of <, > and &).
func AppendJSONString(dst []byte, s string, escapeHTML bool) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!escapeHTML || (b != '<' && b != '>' && b != '&')) {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
