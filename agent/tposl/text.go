package tposl

import (
	"mime"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"

	"github.com/tposagent/tposagent/internal/textsafe"
)

// toUTF8 returns the body as UTF-8. The server is asked for UTF-8 and
// normally sends it; a body in another single-byte charset comes from an
// older or misconfigured .NET server on a Turkish Windows, so:
//
//   - a body that is valid UTF-8 is kept as it is, whatever its label
//     says (Turkish text in Windows-1254 is practically never valid
//     UTF-8: "ş" is the lone byte FE);
//   - otherwise it is decoded from the charset its Content-Type names
//     (windows-1254, iso-8859-9, …) when that is known, else from
//     Windows-1254, the Turkish ANSI code page: ş ğ ı İ survive instead
//     of becoming U+FFFD. This is an assumption (docs/protocols.md).
//
// An XML body whose declaration names its encoding is left to the XML
// decoder (xmlCharset), which reads the declaration.
func toUTF8(body []byte, contentType string) []byte {
	if utf8.Valid(body) || xmlDeclaresEncoding(body) {
		return body
	}
	enc := declared(contentType)
	if enc == nil {
		enc = charmap.Windows1254
	}
	out, err := enc.NewDecoder().Bytes(body)
	if err != nil {
		return body
	}
	return out
}

// declared is the single-byte encoding the Content-Type names, nil for
// none, UTF-8 or an unknown name.
func declared(contentType string) encoding.Encoding {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil
	}
	return charsetNamed(params["charset"])
}

// charsetNamed knows the single-byte charsets a Turkish server may name
// (WHATWG reads iso-8859-9 as windows-1254 too); nil for any other.
// A small table instead of htmlindex, which would link every CJK table.
func charsetNamed(name string) encoding.Encoding {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "windows-1254", "cp1254", "x-cp1254", "iso-8859-9", "iso8859-9", "iso_8859-9", "latin5", "l5", "iso-ir-148", "turkish":
		return charmap.Windows1254
	case "windows-1252", "cp1252", "x-cp1252", "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "us-ascii", "ascii":
		return charmap.Windows1252
	case "iso-8859-15", "iso8859-15", "latin9":
		return charmap.ISO8859_15
	}
	return nil
}

// xmlDeclaresEncoding: the body starts with an XML declaration that names
// an encoding other than UTF-8.
func xmlDeclaresEncoding(b []byte) bool {
	b = trimBody(b)
	if len(b) < 6 || string(b[:5]) != "<?xml" {
		return false
	}
	end := strings.Index(string(b[:min(len(b), 200)]), "?>")
	if end < 0 {
		return false
	}
	decl := strings.ToLower(string(b[:end]))
	i := strings.Index(decl, "encoding")
	return i >= 0 && !strings.Contains(decl[i:], "utf-8")
}

// cleanReturn removes terminal control characters from the server's
// text fields: they are data, shown by status, the CLI and the POS.
func cleanReturn(r Return) Return {
	for _, p := range []*string{&r.ErrorMessage, &r.BayiKodu, &r.ProgramKodu, &r.GMP3ExpDate, &r.LisansModul, &r.DemoBasTarih, &r.OnayFiscalSeriNo} {
		*p = textsafe.Clean(*p)
	}
	return r
}
