package records

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrMoney is wrapped by every error of NormalizeMoney.
var ErrMoney = errors.New("invalid money amount")

// maxMoneyIntDigits bounds the integer part of an amount (999 trillion),
// far above any till balance and well inside a DECIMAL(17,2) column.
const maxMoneyIntDigits = 15

// NormalizeMoney turns an amount into the wire form of Ödüyo: a decimal
// string with a dot and exactly two decimals ("1260.50"). It works on
// decimal digits only and never goes through float64 arithmetic.
//
// Accepted inputs:
//   - string: "1260", "1260.5", "1260,50", "1.260,50", "1,260.50",
//     "1.260.000"; a leading '-' or '+'; surrounding spaces. The last of '.'
//     or ',' is the decimal separator when both occur; the other one groups
//     thousands and must group by three. A lone separator followed by
//     exactly three digits ("1.260", "1,260") is rejected as ambiguous.
//   - json.Number (what a decoder with UseNumber yields): JSON number
//     syntax, exponent allowed within ±30.
//   - float64/float32: through its shortest decimal representation, so
//     1260.5 gives "1260.50" (callers should prefer json.Number).
//   - Go integer types.
//
// More than two decimals are accepted only when the extra ones are zeros
// ("1.2500"): an amount is never rounded.
func NormalizeMoney(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return moneyFromString(x)
	case json.Number:
		return moneyFromNumber(string(x))
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", fmt.Errorf("%w: %v is not a number", ErrMoney, x)
		}
		return moneyFromNumber(strconv.FormatFloat(x, 'f', -1, 64))
	case float32:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("%w: %v is not a number", ErrMoney, x)
		}
		return moneyFromNumber(strconv.FormatFloat(f, 'f', -1, 32))
	case int:
		return moneyFromNumber(strconv.FormatInt(int64(x), 10))
	case int8:
		return moneyFromNumber(strconv.FormatInt(int64(x), 10))
	case int16:
		return moneyFromNumber(strconv.FormatInt(int64(x), 10))
	case int32:
		return moneyFromNumber(strconv.FormatInt(int64(x), 10))
	case int64:
		return moneyFromNumber(strconv.FormatInt(x, 10))
	case uint:
		return moneyFromNumber(strconv.FormatUint(uint64(x), 10))
	case uint8:
		return moneyFromNumber(strconv.FormatUint(uint64(x), 10))
	case uint16:
		return moneyFromNumber(strconv.FormatUint(uint64(x), 10))
	case uint32:
		return moneyFromNumber(strconv.FormatUint(uint64(x), 10))
	case uint64:
		return moneyFromNumber(strconv.FormatUint(x, 10))
	case nil:
		return "", fmt.Errorf("%w: null", ErrMoney)
	}
	return "", fmt.Errorf("%w: unsupported type %T", ErrMoney, v)
}

// quoteShort quotes s for an error message, cut to a readable length.
func quoteShort(s string) string {
	const max = 40
	r := []rune(s)
	if len(r) > max {
		return strconv.Quote(string(r[:max])) + "…"
	}
	return strconv.Quote(s)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func moneyFromString(in string) (string, error) {
	s := strings.TrimSpace(in)
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %s: %s", ErrMoney, quoteShort(in), why)
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > 64 {
		return bad("too long")
	}
	neg := false
	switch s[0] {
	case '-':
		neg, s = true, s[1:]
	case '+':
		s = s[1:]
	}
	if s == "" {
		return bad("no digits")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && c != '.' && c != ',' {
			return bad("must be a decimal number such as 1260.50 or 1.260,50")
		}
	}
	if s[0] < '0' || s[0] > '9' || s[len(s)-1] < '0' || s[len(s)-1] > '9' {
		return bad("must start and end with a digit")
	}
	dots, commas := strings.Count(s, "."), strings.Count(s, ",")
	var intPart, frac string
	switch {
	case dots > 0 && commas > 0:
		dec, thou := byte('.'), ","
		if strings.LastIndexByte(s, ',') > strings.LastIndexByte(s, '.') {
			dec, thou = ',', "."
		}
		i := strings.LastIndexByte(s, dec)
		if strings.IndexByte(s, dec) != i {
			return bad("decimal separator appears twice")
		}
		ip, ok := ungroup(s[:i], thou)
		if !ok {
			return bad("thousands must be grouped by three")
		}
		intPart, frac = ip, s[i+1:]
		if strings.Contains(frac, thou) {
			return bad("thousands separator after the decimal separator")
		}
	case dots+commas >= 2:
		sep := "."
		if commas > 0 {
			sep = ","
		}
		ip, ok := ungroup(s, sep)
		if !ok {
			return bad("thousands must be grouped by three")
		}
		intPart = ip
	case dots+commas == 1:
		i := strings.IndexAny(s, ".,")
		intPart, frac = s[:i], s[i+1:]
		if len(frac) == 3 && len(intPart) <= 3 && intPart[0] != '0' {
			return bad("ambiguous: a thousands separator or three decimals? write 1260 or 1.26")
		}
	default:
		intPart = s
	}
	out, err := moneyFinish(neg, intPart, frac)
	if err != nil {
		return bad(err.Error())
	}
	return out, nil
}

// ungroup removes thousands separators from s after checking the groups:
// 1–3 digits (no leading zero) first, then groups of exactly three.
func ungroup(s, sep string) (string, bool) {
	groups := strings.Split(s, sep)
	first := groups[0]
	if len(first) < 1 || len(first) > 3 || first[0] == '0' || !isDigits(first) {
		return "", false
	}
	for _, g := range groups[1:] {
		if len(g) != 3 || !isDigits(g) {
			return "", false
		}
	}
	return strings.Join(groups, ""), true
}

// moneyFromNumber parses JSON number syntax:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func moneyFromNumber(in string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %s: %s", ErrMoney, quoteShort(in), why)
	}
	s := in
	if len(s) > 64 {
		return bad("too long")
	}
	neg := false
	if strings.HasPrefix(s, "-") {
		neg, s = true, s[1:]
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		es, eneg := s[i+1:], false
		if strings.HasPrefix(es, "+") || strings.HasPrefix(es, "-") {
			eneg, es = es[0] == '-', es[1:]
		}
		if !isDigits(es) {
			return bad("not a number")
		}
		e, err := strconv.Atoi(es)
		if err != nil || e > 30 {
			return bad("exponent out of range")
		}
		if eneg {
			e = -e
		}
		exp = e
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
		if !isDigits(frac) {
			return bad("not a number")
		}
	}
	if !isDigits(intPart) || (len(intPart) > 1 && intPart[0] == '0') {
		return bad("not a number")
	}
	digits := intPart + frac
	point := len(intPart) + exp
	if point < 0 {
		digits = strings.Repeat("0", -point) + digits
		point = 0
	}
	if point > len(digits) {
		digits += strings.Repeat("0", point-len(digits))
	}
	out, err := moneyFinish(neg, digits[:point], digits[point:])
	if err != nil {
		return bad(err.Error())
	}
	return out, nil
}

// moneyFinish formats digits as [-]int.ff, refusing to round.
func moneyFinish(neg bool, intPart, frac string) (string, error) {
	for len(frac) > 2 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if len(frac) > 2 {
		return "", errors.New("more than two decimals")
	}
	for len(frac) < 2 {
		frac += "0"
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	if len(intPart) > maxMoneyIntDigits {
		return "", errors.New("too large")
	}
	if intPart == "0" && frac == "00" {
		neg = false
	}
	if neg {
		return "-" + intPart + "." + frac, nil
	}
	return intPart + "." + frac, nil
}
