package tposl

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Return is ITPOSReturn, the server's answer. It decodes leniently from
// JSON (field names in any case; integers that arrive as strings or as
// integral floats; Status as true/false, "true"/"false", 1/0 or "1"/"0";
// null as the zero value) and from the XML form of the spec in any
// namespace. It encodes to the spec's JSON and XML.
type Return struct {
	Status           bool   `json:"Status"`
	ErrorMessageCode int    `json:"ErrorMessageCode"`
	ErrorMessage     string `json:"ErrorMessage"`
	Id               int    `json:"Id"`
	BayiKodu         string `json:"BayiKodu"`
	ProgramKodu      string `json:"ProgramKodu"`
	GMP3Status       int    `json:"GMP3Status"`
	GMP3ExpDate      string `json:"GMP3ExpDate"`
	LisansModul      string `json:"LisansModul"`
	LisansStatus     int    `json:"LisansStatus"`
	DemoLisansGun    int    `json:"DemoLisansGun"`
	DemoBasTarih     string `json:"DemoBasTarih"`
	Aktif            int    `json:"Aktif"`
	OnayFiscalSeriNo string `json:"OnayFiscalSeriNo"`
}

// ErrNotReturn is wrapped by DecodeReturn when the body is neither a JSON
// object nor an <ITPOSReturn> element.
var ErrNotReturn = errors.New("not an ITPOSReturn")

// DecodeReturn reads an ITPOSReturn from a JSON or XML body (chosen by the
// first non-blank byte; a UTF-8 BOM is skipped). A JSON string that itself
// holds the JSON object (double-encoded, as some .NET services answer) is
// accepted too. It never panics.
//
// Text that is not valid UTF-8 is read as Windows-1254 (see toUTF8); an
// XML declaration's encoding is honoured.
func DecodeReturn(body []byte) (Return, error) {
	b := trimBody(toUTF8(body, ""))
	if len(b) == 0 {
		return Return{}, fmt.Errorf("decode itposreturn: empty body: %w", ErrNotReturn)
	}
	var r Return
	switch b[0] {
	case '<':
		d := xml.NewDecoder(bytes.NewReader(b))
		d.CharsetReader = xmlCharset
		if err := d.Decode(&r); err != nil {
			return Return{}, fmt.Errorf("decode itposreturn xml: %w", err)
		}
		return r, nil
	case '"':
		var inner string
		if err := json.Unmarshal(b, &inner); err != nil {
			return Return{}, fmt.Errorf("decode itposreturn json: %w", err)
		}
		ib := trimBody([]byte(inner))
		if len(ib) == 0 || ib[0] != '{' {
			return Return{}, fmt.Errorf("decode itposreturn json: a string, not an object: %w", ErrNotReturn)
		}
		b = ib
	case '{':
	default:
		return Return{}, fmt.Errorf("decode itposreturn: body is neither json nor xml: %w", ErrNotReturn)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Return{}, fmt.Errorf("decode itposreturn json: %w", err)
	}
	return r, nil
}

// xmlCharset reads an XML body in the encoding its declaration names
// (windows-1254, iso-8859-9, …).
func xmlCharset(label string, input io.Reader) (io.Reader, error) {
	enc := charsetNamed(label)
	if enc == nil {
		return nil, fmt.Errorf("xml encoding %q is not supported", label)
	}
	return enc.NewDecoder().Reader(input), nil
}

func trimBody(b []byte) []byte {
	b = bytes.TrimPrefix(bytes.TrimSpace(b), []byte("\xef\xbb\xbf"))
	return bytes.TrimSpace(b)
}

// wireReturn is Return with lenient field types.
type wireReturn struct {
	Status           flexBool   `json:"Status" xml:"Status"`
	ErrorMessageCode flexInt    `json:"ErrorMessageCode" xml:"ErrorMessageCode"`
	ErrorMessage     flexString `json:"ErrorMessage" xml:"ErrorMessage"`
	Id               flexInt    `json:"Id" xml:"Id"`
	BayiKodu         flexString `json:"BayiKodu" xml:"BayiKodu"`
	ProgramKodu      flexString `json:"ProgramKodu" xml:"ProgramKodu"`
	GMP3Status       flexInt    `json:"GMP3Status" xml:"GMP3Status"`
	GMP3ExpDate      flexString `json:"GMP3ExpDate" xml:"GMP3ExpDate"`
	LisansModul      flexString `json:"LisansModul" xml:"LisansModul"`
	LisansStatus     flexInt    `json:"LisansStatus" xml:"LisansStatus"`
	DemoLisansGun    flexInt    `json:"DemoLisansGun" xml:"DemoLisansGun"`
	DemoBasTarih     flexString `json:"DemoBasTarih" xml:"DemoBasTarih"`
	Aktif            flexInt    `json:"Aktif" xml:"Aktif"`
	OnayFiscalSeriNo flexString `json:"OnayFiscalSeriNo" xml:"OnayFiscalSeriNo"`
}

func (w wireReturn) ret() Return {
	return Return{
		Status: bool(w.Status), ErrorMessageCode: int(w.ErrorMessageCode),
		ErrorMessage: string(w.ErrorMessage), Id: int(w.Id), BayiKodu: string(w.BayiKodu),
		ProgramKodu: string(w.ProgramKodu), GMP3Status: int(w.GMP3Status),
		GMP3ExpDate: string(w.GMP3ExpDate), LisansModul: string(w.LisansModul),
		LisansStatus: int(w.LisansStatus), DemoLisansGun: int(w.DemoLisansGun),
		DemoBasTarih: string(w.DemoBasTarih), Aktif: int(w.Aktif),
		OnayFiscalSeriNo: string(w.OnayFiscalSeriNo),
	}
}

// UnmarshalJSON decodes leniently; see Return.
func (r *Return) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil
	}
	var w wireReturn
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = w.ret()
	return nil
}

// xmlReturn is the encoding form: the spec's namespace and element order.
type xmlReturn struct {
	XMLName          xml.Name `xml:"http://schemas.datacontract.org/2004/07/TriaEFaturaRestServer.Models ITPOSReturn"`
	Aktif            int      `xml:"Aktif"`
	BayiKodu         string   `xml:"BayiKodu"`
	DemoBasTarih     string   `xml:"DemoBasTarih"`
	DemoLisansGun    int      `xml:"DemoLisansGun"`
	ErrorMessage     string   `xml:"ErrorMessage"`
	ErrorMessageCode int      `xml:"ErrorMessageCode"`
	GMP3ExpDate      string   `xml:"GMP3ExpDate"`
	GMP3Status       int      `xml:"GMP3Status"`
	Id               int      `xml:"Id"`
	LisansModul      string   `xml:"LisansModul"`
	LisansStatus     int      `xml:"LisansStatus"`
	OnayFiscalSeriNo string   `xml:"OnayFiscalSeriNo"`
	ProgramKodu      string   `xml:"ProgramKodu"`
	Status           bool     `xml:"Status"`
}

// MarshalXML writes <ITPOSReturn> as the server does.
func (r Return) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return e.Encode(xmlReturn{
		Aktif: r.Aktif, BayiKodu: r.BayiKodu, DemoBasTarih: r.DemoBasTarih,
		DemoLisansGun: r.DemoLisansGun, ErrorMessage: r.ErrorMessage,
		ErrorMessageCode: r.ErrorMessageCode, GMP3ExpDate: r.GMP3ExpDate,
		GMP3Status: r.GMP3Status, Id: r.Id, LisansModul: r.LisansModul,
		LisansStatus: r.LisansStatus, OnayFiscalSeriNo: r.OnayFiscalSeriNo,
		ProgramKodu: r.ProgramKodu, Status: r.Status,
	})
}

// UnmarshalXML reads <ITPOSReturn> from any namespace, elements in any
// order, with the same leniency as JSON.
func (r *Return) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	if start.Name.Local != "ITPOSReturn" {
		return fmt.Errorf("element %q: %w", start.Name.Local, ErrNotReturn)
	}
	var w wireReturn
	if err := d.DecodeElement(&w, &start); err != nil {
		return err
	}
	*r = w.ret()
	return nil
}

// flexInt is an integer that may arrive as a number, an integral float, a
// string holding either, a bool, or null.
type flexInt int

func (f *flexInt) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = 0
		return nil
	case string(b) == "true":
		*f = 1
		return nil
	case string(b) == "false":
		*f = 0
		return nil
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		return f.parse(s)
	}
	return f.parse(string(b))
}

func (f *flexInt) UnmarshalText(b []byte) error { return f.parse(string(b)) }

func (f *flexInt) parse(s string) error {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "null":
		*f = 0
		return nil
	case "true":
		*f = 1
		return nil
	case "false":
		*f = 0
		return nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < math.MinInt32 || n > math.MaxInt32 {
			return errors.New("integer out of range")
		}
		*f = flexInt(n)
		return nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || x != math.Trunc(x) || x < math.MinInt32 || x > math.MaxInt32 {
		return fmt.Errorf("not an integer (%d bytes of text)", len(s))
	}
	*f = flexInt(x)
	return nil
}

// flexBool is a boolean that may arrive as true/false, 1/0, their string
// forms, or null.
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		return f.parse(s)
	}
	return f.parse(string(b))
}

func (f *flexBool) UnmarshalText(b []byte) error { return f.parse(string(b)) }

func (f *flexBool) parse(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "evet":
		*f = true
	case "false", "0", "", "null", "no", "hayir", "hayır":
		*f = false
	default:
		return fmt.Errorf("not a boolean (%d bytes of text)", len(s))
	}
	return nil
}

// flexString is text that may arrive as a string, a number, a bool or null.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case b[0] == '{' || b[0] == '[':
		return errors.New("an object or array where text was expected")
	default:
		*f = flexString(b)
	}
	return nil
}

func (f *flexString) UnmarshalText(b []byte) error {
	*f = flexString(b)
	return nil
}
