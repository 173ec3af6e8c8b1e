// Package gmp3 encodes and decodes the GMP-3 frames the agent exchanges with
// a fiscal cash register (ÖKC): the ECHO request and its response.
//
// It knows bytes only — no ports, no timers. A frame is
//
//	len   2 bytes, big-endian: number of bytes that follow (incl. the LRC)
//	id    12 bytes ASCII: fiscal serial, left-padded with spaces
//	type  3 bytes: message type
//	blen  BER length of body: 1 byte < 0x80, or 0x81 nn, or 0x82 nn nn
//	body  BER-TLVs (multi-byte tags such as DF8208), each with a BER length
//	lrc   1 byte: XOR of every byte of id..body
//
// Every parser here caps what it accepts (MaxFrameLen) and never allocates
// more than the input it was given; errors are typed sentinels, all of which
// except ErrResultCode match ErrBadFrame with errors.Is.
//
// It is pure: bytes in, bytes out; no port, no clock of its own.
package gmp3

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/text/encoding/charmap"
)

// Message types.
const (
	TypeEchoRequest  uint32 = 0xFF8A64
	TypeEchoResponse uint32 = 0xFF8E64 // TypeEchoRequest | 0x000400
)

// Tags of the ECHO exchange.
const (
	TagSequence  uint32 = 0xDF8208 // BCD[3], 1…999999
	TagDate      uint32 = 0xDF8209 // BCD YYMMDD
	TagTime      uint32 = 0xDF820A // BCD HHMMSS
	TagResult    uint32 = 0xDF820D // 2 ASCII, "00" = ok
	TagBrand     uint32 = 0xDFC10A // Windows-1254 text
	TagModel     uint32 = 0xDFC10B // Windows-1254 text
	TagECRSerial uint32 = 0xDFC10C // 12 ASCII
)

// Sizes.
const (
	IDLen = 12
	// MinFrameLen is the smallest value of the len field: id, type, a
	// one-byte body length and the LRC.
	MinFrameLen = IDLen + 3 + 1 + 1
	// MaxFrameLen caps the len field; an ECHO response is well under 200
	// bytes, so anything above this is noise, not a frame.
	MaxFrameLen = 2048
	// MaxSequence is the largest sequence number (six BCD digits).
	MaxSequence = 999999
)

// ErrBadFrame matches every error about the shape or content of a frame.
var ErrBadFrame = errors.New("bad gmp-3 frame")

// Specific frame errors; each matches ErrBadFrame with errors.Is.
var (
	ErrTruncated     = frameErr("truncated frame")
	ErrTooLong       = frameErr("frame length out of range")
	ErrBadLRC        = frameErr("lrc mismatch")
	ErrWrongType     = frameErr("unexpected message type")
	ErrEchoed        = frameErr("our own request came back (echo or loopback)")
	ErrWrongSequence = frameErr("sequence not echoed")
	ErrBadBER        = frameErr("malformed ber-tlv")
	ErrBadID         = frameErr("fiscal id is not a fiscal or ecr serial")
	ErrMissingTag    = frameErr("required tag missing")
	ErrBadBCD        = frameErr("malformed bcd")
)

// ErrResultCode reports a well-formed answer whose result code is not "00".
// It does not match ErrBadFrame: the device answered and refused.
var ErrResultCode = errors.New("device answered with an error result code")

type kindError struct{ msg string }

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == ErrBadFrame }

func frameErr(msg string) error { return &kindError{msg: msg} }

// Frame is one decoded frame. Body aliases the input of Decode.
type Frame struct {
	ID   string // the 12 id bytes as sent, spaces kept
	Type uint32
	Body []byte // the BER-TLV body
}

// Encode builds a frame from its parts.
func Encode(id string, typ uint32, body []byte) ([]byte, error) {
	if len(id) > IDLen {
		return nil, fmt.Errorf("encode frame: id %q longer than %d bytes", id, IDLen)
	}
	blen := berLen(len(body))
	n := IDLen + 3 + len(blen) + len(body) + 1
	if n > MaxFrameLen {
		return nil, fmt.Errorf("encode frame: %d bytes: %w", n, ErrTooLong)
	}
	out := make([]byte, 0, 2+n)
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	out = append(out, strings.Repeat(" ", IDLen-len(id))...)
	out = append(out, id...)
	out = append(out, byte(typ>>16), byte(typ>>8), byte(typ))
	out = append(out, blen...)
	out = append(out, body...)
	out = append(out, LRC(out[2:]))
	return out, nil
}

// LRC is the XOR of b.
func LRC(b []byte) byte {
	var x byte
	for _, c := range b {
		x ^= c
	}
	return x
}

// Decode parses exactly one whole frame (len prefix included). It checks the
// length, the LRC and the body's BER length, not the type.
func Decode(b []byte) (Frame, error) {
	if len(b) < 2 {
		return Frame{}, fmt.Errorf("decode frame: %d bytes: %w", len(b), ErrTruncated)
	}
	n := int(binary.BigEndian.Uint16(b))
	if n < MinFrameLen || n > MaxFrameLen {
		return Frame{}, fmt.Errorf("decode frame: length %d: %w", n, ErrTooLong)
	}
	if len(b) < 2+n {
		return Frame{}, fmt.Errorf("decode frame: have %d of %d bytes: %w", len(b), 2+n, ErrTruncated)
	}
	if len(b) > 2+n {
		return Frame{}, fmt.Errorf("decode frame: %d bytes after the frame: %w", len(b)-2-n, ErrTooLong)
	}
	p := b[2 : 2+n]
	if got, want := p[n-1], LRC(p[:n-1]); got != want {
		return Frame{}, fmt.Errorf("decode frame: lrc %02x, computed %02x: %w", got, want, ErrBadLRC)
	}
	f := Frame{ID: string(p[:IDLen]), Type: uint32(p[12])<<16 | uint32(p[13])<<8 | uint32(p[14])}
	blen, hl, err := readBERLen(p[15 : n-1])
	if err != nil {
		return Frame{}, fmt.Errorf("decode frame: body length: %w", err)
	}
	if 15+hl+blen != n-1 {
		return Frame{}, fmt.Errorf("decode frame: body length %d does not fill the frame: %w", blen, ErrBadBER)
	}
	f.Body = p[15+hl : n-1]
	return f, nil
}

// berLen encodes a BER length.
func berLen(n int) []byte {
	switch {
	case n < 0x80:
		return []byte{byte(n)}
	case n <= 0xFF:
		return []byte{0x81, byte(n)}
	default:
		return []byte{0x82, byte(n >> 8), byte(n)}
	}
}

// readBERLen reads a BER length at the start of b: the value and the number
// of bytes it took.
func readBERLen(b []byte) (n, size int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	switch c := b[0]; {
	case c < 0x80:
		return int(c), 1, nil
	case c == 0x81:
		if len(b) < 2 {
			return 0, 0, ErrTruncated
		}
		return int(b[1]), 2, nil
	case c == 0x82:
		if len(b) < 3 {
			return 0, 0, ErrTruncated
		}
		return int(b[1])<<8 | int(b[2]), 3, nil
	default:
		return 0, 0, fmt.Errorf("length byte %02x: %w", c, ErrBadBER)
	}
}

// maxTagLen caps a BER tag; GMP-3 tags are at most 3 bytes.
const maxTagLen = 4

// TLV is one tag-length-value of a body. Value aliases the body.
type TLV struct {
	Tag   uint32
	Value []byte
}

// ParseTLVs splits a body into its TLVs.
func ParseTLVs(body []byte) ([]TLV, error) {
	var out []TLV
	for len(body) > 0 {
		if len(body) < 2 {
			return nil, fmt.Errorf("parse tlv: %w", ErrTruncated)
		}
		var tag uint32
		tl := 1
		tag = uint32(body[0])
		if body[0]&0x1F == 0x1F {
			for {
				if tl >= len(body) {
					return nil, fmt.Errorf("parse tlv: tag: %w", ErrTruncated)
				}
				if tl >= maxTagLen {
					return nil, fmt.Errorf("parse tlv: tag longer than %d bytes: %w", maxTagLen, ErrBadBER)
				}
				c := body[tl]
				tag = tag<<8 | uint32(c)
				tl++
				if c&0x80 == 0 {
					break
				}
			}
		}
		n, hl, err := readBERLen(body[tl:])
		if err != nil {
			return nil, fmt.Errorf("parse tlv %X: length: %w", tag, err)
		}
		start := tl + hl
		if n > len(body)-start {
			return nil, fmt.Errorf("parse tlv %X: value of %d bytes, %d left: %w", tag, n, len(body)-start, ErrTruncated)
		}
		out = append(out, TLV{Tag: tag, Value: body[start : start+n]})
		body = body[start+n:]
	}
	return out, nil
}

func appendTLV(b []byte, tag uint32, v []byte) []byte {
	switch {
	case tag > 0xFFFF:
		b = append(b, byte(tag>>16), byte(tag>>8), byte(tag))
	case tag > 0xFF:
		b = append(b, byte(tag>>8), byte(tag))
	default:
		b = append(b, byte(tag))
	}
	b = append(b, berLen(len(v))...)
	return append(b, v...)
}

// BCD encodes n (0 ≤ n < 10^(2·size)) as size bytes of packed BCD.
func BCD(n, size int) []byte {
	out := make([]byte, size)
	for i := size - 1; i >= 0; i-- {
		lo := n % 10
		n /= 10
		hi := n % 10
		n /= 10
		out[i] = byte(hi<<4 | lo)
	}
	return out
}

// FromBCD decodes packed BCD.
func FromBCD(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 4 {
		return 0, fmt.Errorf("bcd of %d bytes: %w", len(b), ErrBadBCD)
	}
	n := 0
	for _, c := range b {
		hi, lo := int(c>>4), int(c&0x0F)
		if hi > 9 || lo > 9 {
			return 0, fmt.Errorf("bcd byte %02x: %w", c, ErrBadBCD)
		}
		n = n*100 + hi*10 + lo
	}
	return n, nil
}

// EchoRequest builds the ECHO request with sequence seq (1…999999, taken
// modulo the range otherwise) stamped with t's local date and time.
func EchoRequest(seq int, t time.Time) []byte {
	seq = NormSequence(seq)
	body := make([]byte, 0, 21)
	body = appendTLV(body, TagSequence, BCD(seq, 3))
	body = appendTLV(body, TagDate, BCD(t.Year()%100*10000+int(t.Month())*100+t.Day(), 3))
	body = appendTLV(body, TagTime, BCD(t.Hour()*10000+t.Minute()*100+t.Second(), 3))
	f, _ := Encode("", TypeEchoRequest, body) // cannot fail: fixed small size
	return f
}

// NormSequence maps any int into 1…MaxSequence.
func NormSequence(seq int) int {
	if seq >= 1 && seq <= MaxSequence {
		return seq
	}
	seq %= MaxSequence
	if seq < 0 {
		seq += MaxSequence
	}
	return seq + 1
}

// Request is a decoded ECHO request (what a simulated device reads).
type Request struct {
	Sequence int
	Time     time.Time // date and time from the request, in time.Local
}

// ParseEchoRequest decodes a whole ECHO request frame.
func ParseEchoRequest(b []byte) (Request, error) {
	f, err := Decode(b)
	if err != nil {
		return Request{}, err
	}
	if f.Type != TypeEchoRequest {
		return Request{}, fmt.Errorf("parse echo request: type %06X: %w", f.Type, ErrWrongType)
	}
	tlvs, err := ParseTLVs(f.Body)
	if err != nil {
		return Request{}, fmt.Errorf("parse echo request: %w", err)
	}
	var r Request
	var date, clock = -1, -1
	for _, t := range tlvs {
		switch t.Tag {
		case TagSequence:
			if r.Sequence, err = FromBCD(t.Value); err != nil {
				return Request{}, fmt.Errorf("parse echo request: sequence: %w", err)
			}
		case TagDate:
			if date, err = FromBCD(t.Value); err != nil {
				return Request{}, fmt.Errorf("parse echo request: date: %w", err)
			}
		case TagTime:
			if clock, err = FromBCD(t.Value); err != nil {
				return Request{}, fmt.Errorf("parse echo request: time: %w", err)
			}
		}
	}
	if r.Sequence == 0 {
		return Request{}, fmt.Errorf("parse echo request: sequence: %w", ErrMissingTag)
	}
	if date >= 0 && clock >= 0 {
		r.Time = time.Date(2000+date/10000, time.Month(date/100%100), date%100,
			clock/10000, clock/100%100, clock%100, 0, time.Local)
	}
	return r, nil
}

// Response is a decoded ECHO response.
type Response struct {
	FiscalSerial string // the id field, spaces trimmed
	Sequence     int
	Result       string // "00" = ok
	Brand        string // decoded from Windows-1254
	Model        string // decoded from Windows-1254
	ECRSerial    string
}

// EncodeEchoResponse builds an ECHO response (what a device sends). Brand
// and model are encoded to Windows-1254; characters it cannot hold are an
// error. An empty Result means "00"; empty optional fields are left out.
func EncodeEchoResponse(r Response) ([]byte, error) {
	result := r.Result
	if result == "" {
		result = "00"
	}
	body := make([]byte, 0, 64)
	body = appendTLV(body, TagSequence, BCD(NormSequence(r.Sequence), 3))
	body = appendTLV(body, TagResult, []byte(result))
	for _, f := range []struct {
		tag uint32
		s   string
	}{{TagBrand, r.Brand}, {TagModel, r.Model}} {
		if f.s == "" {
			continue
		}
		v, err := charmap.Windows1254.NewEncoder().Bytes([]byte(f.s))
		if err != nil {
			return nil, fmt.Errorf("encode echo response: tag %X: %w", f.tag, err)
		}
		body = appendTLV(body, f.tag, v)
	}
	if r.ECRSerial != "" {
		body = appendTLV(body, TagECRSerial, []byte(r.ECRSerial))
	}
	return Encode(r.FiscalSerial, TypeEchoResponse, body)
}

// ParseEchoResponse decodes a whole frame as the answer to the ECHO request
// with sequence seq (0 skips the sequence check). It rejects our own request
// coming back (ErrEchoed), any other type (ErrWrongType), a sequence that is
// not ours (ErrWrongSequence), an id that is neither a fiscal serial (two
// letters and eight digits) nor a 12-character ECR serial (ErrBadID), and a
// result code other than "00" (ErrResultCode).
func ParseEchoResponse(b []byte, seq int) (Response, error) {
	f, err := Decode(b)
	if err != nil {
		return Response{}, err
	}
	switch f.Type {
	case TypeEchoResponse:
	case TypeEchoRequest:
		return Response{}, fmt.Errorf("parse echo response: %w", ErrEchoed)
	default:
		return Response{}, fmt.Errorf("parse echo response: type %06X: %w", f.Type, ErrWrongType)
	}
	tlvs, err := ParseTLVs(f.Body)
	if err != nil {
		return Response{}, fmt.Errorf("parse echo response: %w", err)
	}
	r := Response{FiscalSerial: strings.Trim(f.ID, " ")}
	var haveSeq, haveResult bool
	for _, t := range tlvs {
		switch t.Tag {
		case TagSequence:
			if r.Sequence, err = FromBCD(t.Value); err != nil {
				return Response{}, fmt.Errorf("parse echo response: sequence: %w", err)
			}
			haveSeq = true
		case TagResult:
			r.Result = string(t.Value)
			haveResult = true
		case TagBrand:
			r.Brand = decodeText(t.Value)
		case TagModel:
			r.Model = decodeText(t.Value)
		case TagECRSerial:
			r.ECRSerial = strings.TrimSpace(decodeText(t.Value))
		}
	}
	if !haveSeq {
		return Response{}, fmt.Errorf("parse echo response: sequence: %w", ErrMissingTag)
	}
	if seq != 0 && r.Sequence != NormSequence(seq) {
		return Response{}, fmt.Errorf("parse echo response: got sequence %d, sent %d: %w", r.Sequence, NormSequence(seq), ErrWrongSequence)
	}
	if !haveResult {
		return Response{}, fmt.Errorf("parse echo response: result code: %w", ErrMissingTag)
	}
	if r.Result != "00" {
		return Response{}, fmt.Errorf("parse echo response: result %q: %w", printable(r.Result), ErrResultCode)
	}
	if !ValidSerial(r.FiscalSerial) {
		return Response{}, fmt.Errorf("parse echo response: id %q: %w", printable(r.FiscalSerial), ErrBadID)
	}
	return r, nil
}

// ValidSerial reports whether s is a fiscal serial (two letters and eight
// digits, e.g. JI20012345) or a 12-character ECR serial of letters and digits.
func ValidSerial(s string) bool {
	if len(s) == 10 && isLetter(s[0]) && isLetter(s[1]) && allDigits(s[2:]) {
		return true
	}
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLetter(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func decodeText(b []byte) string {
	s, err := charmap.Windows1254.NewDecoder().Bytes(b)
	if err != nil { // cannot happen: every byte maps
		return ""
	}
	return strings.TrimRight(string(s), " \x00")
}

// printable keeps error text readable whatever the device sent.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F {
			return '?'
		}
		return r
	}, s)
}
