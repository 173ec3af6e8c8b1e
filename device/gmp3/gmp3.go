// Package gmp3 encodes and decodes the GMP-3 frames a read-only client
// exchanges with a Turkish fiscal cash register (ÖKC): the link-layer frame
// in its three dialects and the ECHO request and response.
//
// It knows bytes only — no ports, no timers. A frame is
//
//	STX   0x02
//	len   2 bytes, big-endian: the number of bytes from id through body
//	id    12 bytes: the device's fiscal id, padded with '0'
//	type  3 bytes: message type, e.g. FF 8A 64 (ECHO request)
//	blen  BER length of body: 1 byte < 0x80, or 0x81 nn, or 0x82 nn nn
//	body  TLVs (tags of 1–3 bytes, BER lengths)
//	check CRC-16/ARC or CRC-16/CCITT-FALSE (2 bytes, big-endian), or a
//	      1-byte XOR LRC (Hugin T300 dialect), over id through body
//	ETX   0x03
//
// Everything here caps what it accepts (MaxFrame bytes per frame) and never
// allocates in proportion to hostile input; errors are typed sentinels. All
// frame errors match ErrBadFrame with errors.Is; a well-formed answer with
// a result code other than "00" is a *ResultError instead.
//
// Known from public vendor code: the framing, both CRCs and the T300 LRC,
// the tags and the response type (request | 0x000400). Inferred, not
// proven on hardware: that the 12-byte id in the header of an ECHO response
// is the device's own fiscal id.
//
// It is pure: bytes in, bytes out; no port, no clock of its own.
package gmp3

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Control bytes of the link layer.
const (
	STX byte = 0x02
	ETX byte = 0x03
	ACK byte = 0x06
	NAK byte = 0x15
)

// Sizes.
const (
	IDLen = 12
	// MaxFrame caps a whole frame, STX to ETX. An ECHO answer is under 100
	// bytes; anything longer is noise.
	MaxFrame = 4096
	// minLen is the smallest len field: id, type and a 1-byte body length.
	minLen = IDLen + 3 + 1
	// quirkShift is how many bytes some replies carry between len and id.
	quirkShift = 2
)

// Dialect is the link-layer variant: which check closes a frame and how the
// id is padded.
type Dialect uint8

// Dialects. The zero value is the default, CRC-16/ARC.
const (
	// ARC: CRC-16/ARC, id right-padded with '0' (Hugin's default).
	ARC Dialect = iota
	// CCITT: CRC-16/CCITT-FALSE, id right-padded with '0' (Hugin's fallback
	// when a device refuses the ARC frame).
	CCITT
	// T300: 1-byte XOR LRC, id left-padded with '0' (Hugin T300, ids FT…).
	T300
)

var dialectNames = [...]string{ARC: "crc16-arc", CCITT: "crc16-ccitt", T300: "t300"}

func (d Dialect) String() string {
	if int(d) < len(dialectNames) {
		return dialectNames[d]
	}
	return fmt.Sprintf("dialect(%d)", d)
}

// Dialects lists every dialect in the order an automatic probe tries them.
func Dialects() []Dialect { return []Dialect{ARC, CCITT, T300} }

// ErrUnknownDialect is returned by ParseDialect.
var ErrUnknownDialect = errors.New("unknown gmp-3 dialect")

// ParseDialect reads a dialect name: "crc16-arc", "crc16-ccitt" or "t300"
// (case-insensitive).
func ParseDialect(s string) (Dialect, error) {
	for i, n := range dialectNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Dialect(i), nil
		}
	}
	return 0, fmt.Errorf("parse dialect %q: %w (want crc16-arc, crc16-ccitt or t300)", s, ErrUnknownDialect)
}

// CheckLen is the size of the dialect's check field.
func (d Dialect) CheckLen() int {
	if d == T300 {
		return 1
	}
	return 2
}

// appendCheck appends the dialect's check of b.
func (d Dialect) appendCheck(dst, b []byte) []byte {
	switch d {
	case T300:
		return append(dst, LRC(b))
	case CCITT:
		return binary.BigEndian.AppendUint16(dst, CRC16CCITT(b))
	default:
		return binary.BigEndian.AppendUint16(dst, CRC16ARC(b))
	}
}

// checkOK reports whether check is the dialect's check of b.
func (d Dialect) checkOK(b, check []byte) bool {
	switch d {
	case T300:
		return len(check) == 1 && check[0] == LRC(b)
	case CCITT:
		return len(check) == 2 && binary.BigEndian.Uint16(check) == CRC16CCITT(b)
	default:
		return len(check) == 2 && binary.BigEndian.Uint16(check) == CRC16ARC(b)
	}
}

var arcTable, ccittTable = func() (a, c [256]uint16) {
	for i := range 256 {
		x := uint16(i)
		for range 8 {
			if x&1 != 0 {
				x = x>>1 ^ 0xA001
			} else {
				x >>= 1
			}
		}
		a[i] = x
		y := uint16(i) << 8
		for range 8 {
			if y&0x8000 != 0 {
				y = y<<1 ^ 0x1021
			} else {
				y <<= 1
			}
		}
		c[i] = y
	}
	return
}()

// CRC16ARC is CRC-16/ARC (poly 0x8005 reflected, init 0, no xorout):
// "123456789" → 0xBB3D.
func CRC16ARC(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc = crc>>8 ^ arcTable[byte(crc)^c]
	}
	return crc
}

// CRC16CCITT is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not
// reflected, no xorout): "123456789" → 0x29B1.
func CRC16CCITT(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc = crc<<8 ^ ccittTable[byte(crc>>8)^c]
	}
	return crc
}

// LRC is the XOR of b: "123456789" → 0x31.
func LRC(b []byte) byte {
	var x byte
	for _, c := range b {
		x ^= c
	}
	return x
}

// ErrBadFrame matches every error about the shape or content of a frame.
var ErrBadFrame = errors.New("bad gmp-3 frame")

// Specific frame errors; each matches ErrBadFrame with errors.Is.
var (
	ErrLength        = frameErr("frame length out of range")
	ErrNoETX         = frameErr("frame does not end with etx")
	ErrChecksum      = frameErr("checksum mismatch")
	ErrHeader        = frameErr("no gmp-3 header (id and type) in the frame")
	ErrBadBER        = frameErr("malformed ber-tlv")
	ErrWrongType     = frameErr("unexpected message type")
	ErrEchoed        = frameErr("our own request came back (echo or loopback)")
	ErrWrongSequence = frameErr("sequence not echoed")
	ErrBadID         = frameErr("header id is not a fiscal id")
	ErrMissingTag    = frameErr("required tag missing")
	ErrBadBCD        = frameErr("malformed bcd")
)

type kindError struct{ msg string }

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == ErrBadFrame }

func frameErr(msg string) error { return &kindError{msg: msg} }

// HeaderID is the 12-byte header id for a fiscal id in dialect d: the
// classic dialects right-pad with '0', T300 left-pads; "" gives twelve '0'.
// An id longer than 12 bytes or with bytes outside printable ASCII is an
// error.
func HeaderID(d Dialect, fiscalID string) (string, error) {
	if len(fiscalID) > IDLen {
		return "", fmt.Errorf("header id %q: longer than %d bytes", printable(fiscalID), IDLen)
	}
	for i := 0; i < len(fiscalID); i++ {
		if fiscalID[i] < 0x20 || fiscalID[i] > 0x7E {
			return "", fmt.Errorf("header id %q: not printable ascii", printable(fiscalID))
		}
	}
	pad := strings.Repeat("0", IDLen-len(fiscalID))
	if d == T300 {
		return pad + fiscalID, nil
	}
	return fiscalID + pad, nil
}

// Frame is one decoded frame. Body aliases the decoder's input.
type Frame struct {
	Dialect Dialect
	ID      string // the 12 header id bytes as received
	Type    uint32
	Body    []byte // the TLVs
	// Shifted is set when the id started 2 bytes after len (the
	// receive-path quirk in Hugin's code); those bytes are in Prefix.
	Shifted bool
	Prefix  [2]byte
}

// Encode builds a frame: id must be exactly 12 bytes (see HeaderID).
func Encode(d Dialect, id string, typ uint32, body []byte) ([]byte, error) {
	if len(id) != IDLen {
		return nil, fmt.Errorf("encode frame: id of %d bytes, want %d", len(id), IDLen)
	}
	blen := berLen(len(body))
	n := IDLen + 3 + len(blen) + len(body)
	if 3+n+d.CheckLen()+1 > MaxFrame {
		return nil, fmt.Errorf("encode frame: %d bytes: %w", n, ErrLength)
	}
	out := make([]byte, 0, 3+n+d.CheckLen()+1)
	out = append(out, STX)
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	out = append(out, id...)
	out = append(out, byte(typ>>16), byte(typ>>8), byte(typ))
	out = append(out, blen...)
	out = append(out, body...)
	out = d.appendCheck(out, out[3:])
	return append(out, ETX), nil
}

// Decode parses exactly one whole frame, STX to ETX, in dialect d.
func Decode(d Dialect, b []byte) (Frame, error) {
	if len(b) > MaxFrame {
		return Frame{}, fmt.Errorf("decode frame: %d bytes: %w", len(b), ErrLength)
	}
	s := Scanner{Dialect: d, store: b, w: len(b)} // reads b in place
	f, err := s.Next()
	if err != nil {
		if errors.Is(err, ErrNeedMore) {
			return Frame{}, fmt.Errorf("decode frame: %d bytes: %w", len(b), ErrLength)
		}
		return Frame{}, fmt.Errorf("decode frame: %w", err)
	}
	if s.Dropped > 0 || s.Buffered() > 0 {
		return Frame{}, fmt.Errorf("decode frame: %d bytes outside the frame: %w", s.Dropped+s.Buffered(), ErrLength)
	}
	return f, nil
}

// parse reads id, type and body from the covered bytes (len's N bytes).
func parse(d Dialect, p []byte) (Frame, error) {
	for _, shift := range []int{0, quirkShift} {
		if len(p) < shift+minLen {
			break
		}
		h := p[shift:]
		if h[IDLen] != 0xFF || h[IDLen+1]&0xF0 != 0x80 {
			continue
		}
		blen, hl, err := readBERLen(h[IDLen+3:])
		if err != nil || IDLen+3+hl+blen != len(h) {
			continue
		}
		f := Frame{
			Dialect: d,
			ID:      string(h[:IDLen]),
			Type:    uint32(h[IDLen])<<16 | uint32(h[IDLen+1])<<8 | uint32(h[IDLen+2]),
			Body:    h[IDLen+3+hl:],
			Shifted: shift > 0,
		}
		copy(f.Prefix[:], p[:shift])
		return f, nil
	}
	return Frame{}, ErrHeader
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
		return 0, 0, ErrBadBER
	}
	switch c := b[0]; {
	case c < 0x80:
		return int(c), 1, nil
	case c == 0x81 && len(b) >= 2:
		return int(b[1]), 2, nil
	case c == 0x82 && len(b) >= 3:
		return int(b[1])<<8 | int(b[2]), 3, nil
	}
	return 0, 0, ErrBadBER
}

// maxTagLen caps a tag; GMP-3 tags are at most 3 bytes.
const maxTagLen = 3

// TLV is one tag-length-value of a body. Value aliases the body.
type TLV struct {
	Tag   uint32
	Value []byte
}

// maxTLVs caps the TLVs of one body (a body is under 4 KiB anyway).
const maxTLVs = 256

// ParseTLVs splits a body into its TLVs. A tag continues while a byte is
// ≥ 0x7F (as Hugin's GetTag reads it), up to 3 bytes.
func ParseTLVs(body []byte) ([]TLV, error) {
	var out []TLV
	for len(body) > 0 {
		if len(out) == maxTLVs {
			return nil, fmt.Errorf("parse tlv: more than %d: %w", maxTLVs, ErrBadBER)
		}
		tl := 0
		var tag uint32
		for {
			if tl >= len(body) {
				return nil, fmt.Errorf("parse tlv: tag: %w", ErrBadBER)
			}
			c := body[tl]
			tag = tag<<8 | uint32(c)
			tl++
			if c < 0x7F || tl == maxTagLen {
				break
			}
		}
		n, hl, err := readBERLen(body[tl:])
		if err != nil {
			return nil, fmt.Errorf("parse tlv %X: length: %w", tag, err)
		}
		start := tl + hl
		if n > len(body)-start {
			return nil, fmt.Errorf("parse tlv %X: value of %d bytes, %d left: %w", tag, n, len(body)-start, ErrBadBER)
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

// FromBCD decodes 1–4 bytes of packed BCD.
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

// printable keeps error text readable whatever the device sent.
func printable(s string) string {
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7F || r == 0xFFFD {
			return '?'
		}
		return r
	}, s)
}
