package oduyo

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"

	"github.com/tposagent/tposagent/internal/textsafe"
)

// Token limits: a session id must fit in a header unchanged.
const (
	minTokenLen = 8
	maxTokenLen = 4096
)

// sessionKeys are looked up (case-insensitively) in this order; "data" is
// last because it often carries a message instead.
var sessionKeys = []string{"session_id", "sessionid", "token", "access_token", "data"}

// parseLogin extracts the session id from a login response body. The
// format is undocumented, so it accepts a JSON object with the id under
// one of sessionKeys (also nested in "data"), a JSON string, or a bare
// token. The returned error never quotes the body: it may hold the id.
//
// Only a JSON object with a boolean "status" is Ödüyo's own answer: its
// "status": false (or a "status": true without a session id) is Auth.
// Anything else without a session id — an empty body, an array, a text or
// a JSON object of another shape (a captive portal's or a gateway's 200)
// — is not Ödüyo's answer and says nothing about the credentials: it is
// Transient and Foreign, so the server does not count as reachable.
func parseLogin(body []byte) (string, *Error) {
	fail := func(class Class, msg string) (string, *Error) {
		return "", &Error{Op: "login", Class: class, Msg: msg}
	}
	foreign := func(msg string) (string, *Error) {
		return "", &Error{Op: "login", Class: Transient, Foreign: true, Msg: msg + ": not an answer of Ödüyo (captive portal or proxy? check base_url if it persists)"}
	}
	b := utf8Text(bytes.TrimSpace(bytes.TrimPrefix(body, utf8BOM)))
	if len(b) == 0 {
		return foreign("empty login response")
	}
	switch b[0] {
	case '<':
		return foreign("login answered with an html page instead of a session id")
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fail(Transient, "login response is malformed json")
		}
		if !validToken(s) {
			return foreign("login response is a json string that is not a session id")
		}
		return s, nil
	case '{':
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return fail(Transient, "login response is malformed json")
		}
		st, hasStatus := jsonStatus(obj)
		if hasStatus && !st {
			msg := "login refused by the server"
			if m := serverMessage(obj); m != "" {
				msg += ": " + m
			}
			return fail(Auth, msg)
		}
		if tok, ok := findToken(obj, 0); ok {
			return tok, nil
		}
		if !hasStatus {
			return foreign("login response is a json object with no status and no session id (keys: " + keyList(obj) + ")")
		}
		return fail(Auth, "login response carries no session id (keys: "+keyList(obj)+")")
	case '[':
		return foreign("login response is a json array, not a session id")
	}
	if s := string(b); validToken(s) {
		return s, nil
	}
	return foreign("login response is neither json nor a bare session id")
}

func findToken(obj map[string]json.RawMessage, depth int) (string, bool) {
	lower := make(map[string]json.RawMessage, len(obj))
	for k, v := range obj {
		lower[strings.ToLower(k)] = v
	}
	for _, k := range sessionKeys {
		v, ok := lower[k]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil {
			if validToken(s) {
				return s, true
			}
			continue
		}
		var inner map[string]json.RawMessage
		if depth < 3 && json.Unmarshal(v, &inner) == nil {
			if tok, ok := findToken(inner, depth+1); ok {
				return tok, true
			}
		}
	}
	return "", false
}

// validToken accepts visible ASCII without spaces, so that the id goes
// into the Authorization header unchanged.
func validToken(s string) bool {
	if len(s) < minTokenLen || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// jsonStatus reads a "status" member: true/false, "true"/"false", 1/0.
func jsonStatus(obj map[string]json.RawMessage) (value, present bool) {
	raw, ok := obj["status"]
	if !ok {
		return false, false
	}
	switch strings.ToLower(strings.Trim(string(bytes.TrimSpace(raw)), `"`)) {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

// boolStatus reads a "status" member that is a JSON boolean, the mark of
// an answer of Ödüyo. obj may be nil.
func boolStatus(obj map[string]json.RawMessage) (value, ok bool) {
	switch string(bytes.TrimSpace(obj["status"])) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// serverMessage picks a human message out of an answer, stripped of
// terminal control characters and escape sequences (textsafe.Clean).
// Callers redact secrets from it first and then cut it short (cutMessage):
// a message cut before the redaction could keep the start of a secret.
func serverMessage(obj map[string]json.RawMessage) string {
	for _, k := range []string{"message", "msg", "error", "error_message", "data"} {
		var s string
		if raw, ok := obj[k]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
			return textsafe.Clean(s)
		}
	}
	return ""
}

// maxMessage bounds a server's message as kept (runes).
const maxMessage = 240

// cutMessage cuts s to maxMessage runes.
func cutMessage(s string) string {
	n := 0
	for i := range s {
		if n == maxMessage {
			return s[:i] + "…"
		}
		n++
	}
	return s
}

// utf8Text returns a body that is not valid UTF-8 decoded as Windows-1254
// (the Turkish ANSI code page: ş ğ ı İ instead of U+FFFD), the assumption
// made for both servers (docs/protocols.md); valid UTF-8 is kept as is.
func utf8Text(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	if out, err := charmap.Windows1254.NewDecoder().Bytes(b); err == nil {
		return out
	}
	return b
}

func keyList(obj map[string]json.RawMessage) string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, printableKey(k))
	}
	sort.Strings(keys)
	if len(keys) > 10 {
		keys = append(keys[:10], "…")
	}
	if len(keys) == 0 {
		return "none"
	}
	return strings.Join(keys, ", ")
}

// utf8BOM is what some Windows servers put before a JSON body.
var utf8BOM = []byte("\xef\xbb\xbf")

// printableKey shows a key of a server's answer in an error: short, and
// quoted when it holds control characters.
func printableKey(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return strconv.Quote(s)
	}
	return s
}
