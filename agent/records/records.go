package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrInvalidRecord is wrapped by every *FieldError, so callers can test
// for "the record itself is bad" with errors.Is.
var ErrInvalidRecord = errors.New("invalid record")

// FieldError says which field of a record is wrong. Field is "column" when
// the record as a whole is wrong (not an object, not UTF-8, too large).
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return "field " + e.Field + ": " + e.Msg }

// Unwrap lets errors.Is(err, ErrInvalidRecord) hold.
func (e *FieldError) Unwrap() error { return ErrInvalidRecord }

// Limits of a record.
const (
	MaxRecordBytes = 64 << 10 // raw column object
	MaxTextRunes   = 1000     // any text field
	// DateTimeLayout is the only datetime format Ödüyo accepts.
	DateTimeLayout = "2006-01-02 15:04:05"
)

type fieldKind int

const (
	kindText fieldKind = iota
	kindID
	kindMoney
	kindStatus
	kindDateTime
)

type fieldSpec struct {
	name string
	kind fieldKind
}

// Field lists in the order of the spec; the canonical column keeps it.
var kasaFields = []fieldSpec{
	{"id", kindID},
	{"integration_id", kindText},
	{"status", kindStatus},
	{"key1", kindText},
	{"key2", kindText},
	{"note", kindText},
	{"price", kindMoney},
	{"price1", kindMoney},
	{"price2", kindMoney},
	{"balance", kindMoney},
	{"balance1", kindMoney},
	{"balance2", kindMoney},
	{"description", kindText},
	{"space2", kindText},
	{"space3", kindText},
	{"space4", kindText},
	{"space5", kindText},
	{"kasafisi_created_in", kindDateTime},
	{"kasafisi_updated_in", kindDateTime},
}

var specialCodeFields = []fieldSpec{
	{"integration_id", kindText},
	{"code", kindText},
	{"status", kindStatus},
	{"key1", kindText},
	{"key2", kindText},
	{"typecode", kindText},
	{"description", kindText},
	{"space1", kindText},
	{"space2", kindText},
	{"space3", kindText},
	{"space4", kindText},
	{"space5", kindText},
	{"special_created_in", kindDateTime},
	{"special_updated_in", kindDateTime},
	{"created_in", kindDateTime},
	{"updated_in", kindDateTime},
}

// NormalizeKasa validates a kasa card column object (no {"column": …}
// wrapper) and returns its canonical JSON and the record key:
// "kasa:id:<id>" when id is given, else "kasa:int:<integration_id>".
// Bad input gives a *FieldError. The rules are in the package doc.
func NormalizeKasa(raw []byte) (column json.RawMessage, key string, err error) {
	if col, key, ok := fastKasa(raw); ok {
		return col, key, nil
	}
	vals, err := parseColumn(raw, kasaFields)
	if err != nil {
		return nil, "", err
	}
	id, intID := vals["id"], vals["integration_id"]
	switch {
	case id != "":
		key = "kasa:id:" + id
	case intID != "":
		key = "kasa:int:" + intID
	default:
		return nil, "", &FieldError{Field: "id", Msg: "id or integration_id is required"}
	}
	return encodeColumn(vals, kasaFields), key, nil
}

// NormalizeSpecialCode validates a special code column object and returns
// its canonical JSON and the record key "special_code:<integration_id>".
// integration_id and code are required. Bad input gives a *FieldError.
func NormalizeSpecialCode(raw []byte) (column json.RawMessage, key string, err error) {
	if col, key, ok := fastSpecialCode(raw); ok {
		return col, key, nil
	}
	vals, err := parseColumn(raw, specialCodeFields)
	if err != nil {
		return nil, "", err
	}
	for _, f := range []string{"integration_id", "code"} {
		if vals[f] == "" {
			return nil, "", &FieldError{Field: f, Msg: "required"}
		}
	}
	return encodeColumn(vals, specialCodeFields), "special_code:" + vals["integration_id"], nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// parseColumn reads one flat JSON object and returns the normalised value
// of every field present (null fields are left out).
func parseColumn(raw []byte, fields []fieldSpec) (map[string]string, error) {
	whole := func(msg string) error { return &FieldError{Field: "column", Msg: msg} }
	if len(raw) > MaxRecordBytes {
		return nil, whole(fmt.Sprintf("larger than %d bytes", MaxRecordBytes))
	}
	raw = bytes.TrimPrefix(raw, utf8BOM)
	if !utf8.Valid(raw) {
		return nil, whole("not valid UTF-8")
	}
	if err := checkSurrogates(raw); err != nil {
		return nil, whole(err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, whole("not JSON: " + jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, whole("must be a JSON object")
	}
	specs := make(map[string]fieldKind, len(fields))
	for _, f := range fields {
		specs[f.name] = f.kind
	}
	vals := make(map[string]string, len(fields))
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, whole("not JSON: " + jsonErr(err))
		}
		name, _ := tok.(string)
		kind, known := specs[name]
		if !known {
			return nil, &FieldError{Field: fieldName(name), Msg: "unknown field"}
		}
		if seen[name] {
			return nil, &FieldError{Field: name, Msg: "duplicate field"}
		}
		seen[name] = true
		tok, err = dec.Token()
		if err != nil {
			return nil, whole("not JSON: " + jsonErr(err))
		}
		if tok == nil {
			continue
		}
		v, msg := normalizeValue(kind, tok)
		if msg != "" {
			return nil, &FieldError{Field: name, Msg: msg}
		}
		if kind == kindID && v == "" {
			continue // "id": "" means no Ödüyo id yet
		}
		vals[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, whole("not JSON: " + jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, whole("trailing data after the object")
	}
	if v, ok := vals["integration_id"]; ok && v != strings.TrimSpace(v) {
		return nil, &FieldError{Field: "integration_id", Msg: "must not begin or end with spaces"}
	}
	return vals, nil
}

// fieldName makes an unknown key printable in an error.
func fieldName(s string) string {
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "…"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return strconv.Quote(s)
		}
	}
	return s
}

// jsonErr describes a decoder error without quoting the input.
func jsonErr(err error) string {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return "unexpected end of input"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	return "syntax error"
}

// normalizeValue returns the normalised value or a message for the user.
func normalizeValue(kind fieldKind, tok json.Token) (string, string) {
	switch x := tok.(type) {
	case string:
		return normalizeString(kind, x)
	case json.Number:
		return normalizeNumber(kind, string(x))
	case json.Delim:
		if x == '{' || x == '[' {
			return "", "must not be an object or array"
		}
	}
	return normalizeOther(kind)
}

// normalizeString normalises a JSON string value of a field.
func normalizeString(kind fieldKind, x string) (string, string) {
	switch kind {
	case kindID:
		s := strings.TrimSpace(x)
		if s == "" {
			return "", ""
		}
		return normalizeID(s)
	case kindMoney:
		if strings.TrimSpace(x) == "" {
			return "", "" // the spec sends "" for an unset amount
		}
		m, err := moneyFromString(x)
		if err != nil {
			return "", err.Error()
		}
		return m, ""
	case kindStatus:
		if x == "0" || x == "1" {
			return x, ""
		}
		return "", `must be "0" or "1"`
	case kindDateTime:
		if x == "" {
			return "", ""
		}
		t, err := time.Parse(DateTimeLayout, x)
		if err != nil || t.Format(DateTimeLayout) != x {
			return "", fmt.Sprintf("%s is not a datetime %s", quoteShort(x), DateTimeLayout)
		}
		return x, ""
	}
	if n := utf8.RuneCountInString(x); n > MaxTextRunes {
		return "", fmt.Sprintf("longer than %d characters (%d)", MaxTextRunes, n)
	}
	for _, r := range x {
		if (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
			return "", fmt.Sprintf("contains control character %U", r)
		}
	}
	return x, ""
}

// normalizeNumber normalises a JSON number (its literal) of a field.
func normalizeNumber(kind fieldKind, x string) (string, string) {
	switch kind {
	case kindID:
		return normalizeID(x)
	case kindMoney:
		m, err := moneyFromNumber(x)
		if err != nil {
			return "", err.Error()
		}
		return m, ""
	case kindStatus:
		if x == "0" || x == "1" {
			return x, ""
		}
	}
	return normalizeOther(kind)
}

func normalizeID(s string) (string, string) {
	if !isDigits(s) {
		return "", "must be a positive integer"
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return "", "must be a positive integer"
	}
	return strconv.FormatInt(n, 10), ""
}

// normalizeOther is the message for a value of the wrong JSON type.
func normalizeOther(kind fieldKind) (string, string) {
	switch kind {
	case kindID:
		return "", "must be an integer"
	case kindMoney:
		return "", "must be a number or a decimal string"
	case kindStatus:
		return "", `must be "0" or "1"`
	case kindDateTime:
		return "", "must be a string " + DateTimeLayout
	}
	return "", "must be a string"
}

// encodeColumn writes the canonical column: fields in spec order, id as a
// number, everything else as a string; no HTML escaping, so Turkish text
// and symbols stay as they are.
func encodeColumn(vals map[string]string, fields []fieldSpec) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for _, f := range fields {
		v, ok := vals[f.name]
		if !ok {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, f.name)
		b.WriteByte(':')
		if f.kind == kindID {
			b.WriteString(v)
		} else {
			writeJSONString(&b, v)
		}
	}
	b.WriteByte('}')
	return json.RawMessage(b.Bytes())
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode appends '\n'
}

// checkSurrogates rejects \u escapes that decode to a lone UTF-16
// surrogate: encoding/json would silently turn them into U+FFFD.
func checkSurrogates(raw []byte) error {
	inStr := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if !inStr {
			if c == '"' {
				inStr = true
			}
			continue
		}
		switch c {
		case '"':
			inStr = false
		case '\\':
			if i+1 >= len(raw) {
				return nil // the decoder reports the truncation
			}
			if raw[i+1] != 'u' {
				i++
				continue
			}
			r, ok := hex4(raw, i+2)
			if !ok {
				return nil // the decoder reports the bad escape
			}
			i += 5
			switch {
			case r >= 0xD800 && r <= 0xDBFF:
				lo, ok := -1, false
				if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					lo, ok = hex4(raw, i+3)
				}
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return errors.New("contains an unpaired UTF-16 surrogate escape")
				}
				i += 6
			case r >= 0xDC00 && r <= 0xDFFF:
				return errors.New("contains an unpaired UTF-16 surrogate escape")
			}
		}
	}
	return nil
}

func hex4(b []byte, at int) (int, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return int(n), true
}
