package gmp3

import (
	"errors"
	"fmt"
	"time"
)

// Message types. A response type is its request's | 0x000400.
const (
	TypeInit         uint32 = 0xFF8A60 // pairing start: never sent by this client
	TypeKeyExchange  uint32 = 0xFF8A62 // pairing key exchange: never sent
	TypeClose        uint32 = 0xFF8A63
	TypeEchoRequest  uint32 = 0xFF8A64
	TypeEchoResponse uint32 = 0xFF8E64
	TypeFPUCommand   uint32 = 0xFF8B21 // encrypted fiscal command: never sent
	TypeInfoCommand  uint32 = 0xFF8B28
)

// Tags of the ECHO exchange.
const (
	TagSequence uint32 = 0xDF8208 // BCD[3], 1…999999
	TagDate     uint32 = 0xDF8209 // BCD YYMMDD
	TagTime     uint32 = 0xDF820A // BCD HHMMSS
	TagResult   uint32 = 0xDF820D // 2 ASCII, "00" = ok
)

// MaxSequence is the largest sequence number (six BCD digits).
const MaxSequence = 999999

// Result codes a device may answer (GMPResCodes).
const (
	ResultOK           = "00"
	ResultUnregistered = "03" // unregistered terminal serial (the header id)
	ResultInvalidOp    = "12"
	ResultSeqNotUnique = "80"
	ResultBusy         = "91"
	ResultSystemError  = "96"
)

// ErrResultCode matches every *ResultError: the device answered with a
// well-formed frame and refused. It does not match ErrBadFrame.
var ErrResultCode = errors.New("device answered with an error result code")

// More specific result errors; each matches ErrResultCode too.
var (
	ErrUnregistered = errors.New("device does not know the header id (result 03)")
	ErrDeviceBusy   = errors.New("device busy (result 91)")
)

// ResultError is a result code other than "00".
type ResultError struct{ Code string }

func (e *ResultError) Error() string {
	what := map[string]string{
		ResultUnregistered: "unregistered terminal serial", ResultInvalidOp: "invalid operation",
		ResultSeqNotUnique: "sequence not unique", ResultBusy: "busy", ResultSystemError: "system error",
	}[e.Code]
	if what == "" {
		what = "unknown code"
	}
	return fmt.Sprintf("device answered result %q (%s)", printable(e.Code), what)
}

// Is matches ErrResultCode, and ErrUnregistered / ErrDeviceBusy by code.
func (e *ResultError) Is(target error) bool {
	switch target {
	case ErrResultCode:
		return true
	case ErrUnregistered:
		return e.Code == ResultUnregistered
	case ErrDeviceBusy:
		return e.Code == ResultBusy
	}
	return false
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

// EchoRequest builds the ECHO request of dialect d with header id hid (12
// bytes, see HeaderID) and sequence seq, stamped with t's date and time as
// they read on t's clock.
func EchoRequest(d Dialect, hid string, seq int, t time.Time) ([]byte, error) {
	body := make([]byte, 0, 21)
	body = appendTLV(body, TagSequence, BCD(NormSequence(seq), 3))
	body = appendTLV(body, TagDate, BCD(t.Year()%100*10000+int(t.Month())*100+t.Day(), 3))
	body = appendTLV(body, TagTime, BCD(t.Hour()*10000+t.Minute()*100+t.Second(), 3))
	f, err := Encode(d, hid, TypeEchoRequest, body)
	if err != nil {
		return nil, fmt.Errorf("echo request: %w", err)
	}
	return f, nil
}

// Request is a decoded ECHO request (what a simulated device reads).
type Request struct {
	ID       string // header id as sent
	Sequence int
	Time     time.Time // date and time from the request, in UTC as they read
}

// ParseEchoRequest reads a frame as an ECHO request.
func ParseEchoRequest(f Frame) (Request, error) {
	if f.Type != TypeEchoRequest {
		return Request{}, fmt.Errorf("parse echo request: type %06X: %w", f.Type, ErrWrongType)
	}
	tlvs, err := ParseTLVs(f.Body)
	if err != nil {
		return Request{}, fmt.Errorf("parse echo request: %w", err)
	}
	r := Request{ID: f.ID}
	date, clock := -1, -1
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
			clock/10000, clock/100%100, clock%100, 0, time.UTC)
	}
	return r, nil
}

// EchoResponse builds the answer to an ECHO request (what a device sends):
// header id hid, the request's sequence, and result ("" means "00").
func EchoResponse(d Dialect, hid string, seq int, result string) ([]byte, error) {
	if result == "" {
		result = ResultOK
	}
	body := make([]byte, 0, 16)
	body = appendTLV(body, TagSequence, BCD(NormSequence(seq), 3))
	body = appendTLV(body, TagResult, []byte(result))
	f, err := Encode(d, hid, TypeEchoResponse, body)
	if err != nil {
		return nil, fmt.Errorf("echo response: %w", err)
	}
	return f, nil
}

// Response is a decoded, accepted ECHO response.
type Response struct {
	HeaderID string // the 12 header bytes
	FiscalID string // taken from the header by shape (FiscalIDFromHeader)
	Sequence int
	Result   string
}

// ParseEchoResponse reads f as the answer to the ECHO request with sequence
// seq. It rejects our own request coming back (ErrEchoed), any other type
// (ErrWrongType), a sequence that is not ours (ErrWrongSequence), a result
// code other than "00" (*ResultError), and a header id that has no fiscal-id
// shape (ErrBadID) — in that order, so a refusal is reported as such even
// when the refusing device put no fiscal id in its header.
func ParseEchoResponse(f Frame, seq int) (Response, error) {
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
	r := Response{HeaderID: f.ID}
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
		}
	}
	if !haveSeq {
		return Response{}, fmt.Errorf("parse echo response: sequence: %w", ErrMissingTag)
	}
	if r.Sequence != NormSequence(seq) {
		return Response{}, fmt.Errorf("parse echo response: got sequence %d, sent %d: %w", r.Sequence, NormSequence(seq), ErrWrongSequence)
	}
	if !haveResult {
		return Response{}, fmt.Errorf("parse echo response: result code: %w", ErrMissingTag)
	}
	if r.Result != ResultOK {
		return Response{}, fmt.Errorf("parse echo response: %w", &ResultError{Code: r.Result})
	}
	id, ok := FiscalIDFromHeader(f.ID)
	if !ok {
		return Response{}, fmt.Errorf("parse echo response: header id %q: %w", printable(f.ID), ErrBadID)
	}
	r.FiscalID = id
	return r, nil
}

// FiscalIDFromHeader takes the fiscal id out of a 12-byte header by shape,
// never by trimming '0's (JI20012340 ends in one):
//   - "AV" + 10 digits: all 12 (Beko/Token ids such as AV0000017893);
//   - 2 letters + 8 digits + "00": the first 10 (classic, right-padded);
//   - "00" + 2 letters + 8 digits: the last 10 (T300, left-padded).
func FiscalIDFromHeader(h string) (string, bool) {
	if len(h) != IDLen {
		return "", false
	}
	switch {
	case h[:2] == "AV" && allDigits(h[2:]):
		return h, true
	case ValidFiscalID(h[:10]) && h[10:] == "00":
		return h[:10], true
	case h[:2] == "00" && ValidFiscalID(h[2:]):
		return h[2:], true
	}
	return "", false
}

// ValidFiscalID reports whether s has the shape of a fiscal id: two
// upper-case letters and eight digits (JI20012345, FT40050248), or two
// upper-case letters and ten digits (AV0000017893).
func ValidFiscalID(s string) bool {
	if len(s) != 10 && len(s) != 12 {
		return false
	}
	return isUpper(s[0]) && isUpper(s[1]) && allDigits(s[2:])
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}
