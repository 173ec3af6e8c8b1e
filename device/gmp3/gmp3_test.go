package gmp3

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// Byte-exact vectors, computed from the public algorithm (no capture from a
// real device exists yet).
const (
	vecReqARC   = "0200254a4932303031323334353030ff8a6415df820803000001df820903261127df820a030930156f8103"
	vecReqCCITT = "0200254a4932303031323334353030ff8a6415df820803000001df820903261127df820a030930158f8503"
	vecReqT300  = "020025303046543430303530323438ff8a6415df820803000001df820903261127df820a030930157103"
	vecRespARC  = "02001d4a4932303031323334353030ff8e640ddf820803000001df820d023030cc9003"
	vecResp03   = "02001d303030303030303030303030ff8e640ddf820803000001df820d023033794a03"
	// The fact sheet's illustration: id FP1234567800, date 26-04-08 09:15:00.
	vecFactSheet = "0200254650313233343536373830 30ff8a6415df820803000001df820903260408df820a0309150080d903"
)

var vecTime = time.Date(2026, 11, 27, 9, 30, 15, 0, time.UTC)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestChecksumSelfTests(t *testing.T) {
	in := []byte("123456789")
	if got := CRC16ARC(in); got != 0xBB3D {
		t.Errorf("CRC-16/ARC = %#04x, want 0xBB3D", got)
	}
	if got := CRC16CCITT(in); got != 0x29B1 {
		t.Errorf("CRC-16/CCITT-FALSE = %#04x, want 0x29B1", got)
	}
	if got := LRC(in); got != 0x31 {
		t.Errorf("XOR LRC = %#02x, want 0x31", got)
	}
}

// crcBitwise is the textbook bit-at-a-time form, to cross-check the tables.
func crcBitwise(b []byte, ccitt bool) uint16 {
	if ccitt {
		crc := uint16(0xFFFF)
		for _, c := range b {
			crc ^= uint16(c) << 8
			for range 8 {
				if crc&0x8000 != 0 {
					crc = crc<<1 ^ 0x1021
				} else {
					crc <<= 1
				}
			}
		}
		return crc
	}
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

func TestCRCTablesMatchBitwise(t *testing.T) {
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*31 + n)
		}
		if CRC16ARC(b) != crcBitwise(b, false) || CRC16CCITT(b) != crcBitwise(b, true) {
			t.Fatalf("table CRC differs from bitwise at length %d", n)
		}
	}
}

func TestEchoRequestVectors(t *testing.T) {
	for _, tc := range []struct {
		d      Dialect
		fiscal string
		want   string
	}{
		{ARC, "JI20012345", vecReqARC},
		{CCITT, "JI20012345", vecReqCCITT},
		{T300, "FT40050248", vecReqT300},
	} {
		t.Run(tc.d.String(), func(t *testing.T) {
			hid, err := HeaderID(tc.d, tc.fiscal)
			if err != nil {
				t.Fatal(err)
			}
			got, err := EchoRequest(tc.d, hid, 1, vecTime)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, tc.want); !bytes.Equal(got, want) {
				t.Fatalf("request\n got %x\nwant %x", got, want)
			}
			f, err := Decode(tc.d, got)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ParseEchoRequest(f)
			if err != nil {
				t.Fatal(err)
			}
			if r.Sequence != 1 || !r.Time.Equal(vecTime) || r.ID != hid {
				t.Fatalf("parsed %+v", r)
			}
			// Any other dialect rejects the frame.
			for _, other := range Dialects() {
				if other != tc.d {
					if _, err := Decode(other, got); !errors.Is(err, ErrBadFrame) {
						t.Errorf("%s decoded a %s frame: %v", other, tc.d, err)
					}
				}
			}
		})
	}
}

func TestFactSheetIllustration(t *testing.T) {
	got, err := EchoRequest(ARC, "FP1234567800", 1, time.Date(2026, 4, 8, 9, 15, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, vecFactSheet); !bytes.Equal(got, want) {
		t.Fatalf("got %x\nwant %x", got, want)
	}
	// Same frame with CCITT ends 59 CF.
	got, _ = EchoRequest(CCITT, "FP1234567800", 1, time.Date(2026, 4, 8, 9, 15, 0, 0, time.UTC))
	if tail := got[len(got)-3:]; !bytes.Equal(tail, []byte{0x59, 0xCF, ETX}) {
		t.Fatalf("ccitt trailer %x", tail)
	}
}

func TestEchoResponseVectors(t *testing.T) {
	got, err := EchoResponse(ARC, "JI2001234500", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	want := mustHex(t, vecRespARC)
	if !bytes.Equal(got, want) {
		t.Fatalf("response\n got %x\nwant %x", got, want)
	}
	f, err := Decode(ARC, want)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseEchoResponse(f, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.FiscalID != "JI20012345" || r.Result != "00" || r.Sequence != 1 || r.HeaderID != "JI2001234500" {
		t.Fatalf("parsed %+v", r)
	}

	got, _ = EchoResponse(ARC, "000000000000", 1, ResultUnregistered)
	if want := mustHex(t, vecResp03); !bytes.Equal(got, want) {
		t.Fatalf("result 03\n got %x\nwant %x", got, want)
	}
	f, _ = Decode(ARC, got)
	_, err = ParseEchoResponse(f, 1)
	var re *ResultError
	if !errors.As(err, &re) || re.Code != "03" || !errors.Is(err, ErrUnregistered) || !errors.Is(err, ErrResultCode) || errors.Is(err, ErrBadFrame) {
		t.Fatalf("result 03: %v", err)
	}
}

func TestResultCodes(t *testing.T) {
	for _, tc := range []struct {
		code string
		is   error
	}{{"03", ErrUnregistered}, {"91", ErrDeviceBusy}, {"96", ErrResultCode}, {"\x00\x01", ErrResultCode}} {
		b, _ := EchoResponse(ARC, "JI2001234500", 5, tc.code)
		f, err := Decode(ARC, b)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseEchoResponse(f, 5)
		if !errors.Is(err, tc.is) || !errors.Is(err, ErrResultCode) {
			t.Errorf("code %q: %v", tc.code, err)
		}
	}
}

func TestParseEchoResponseRejects(t *testing.T) {
	req, _ := EchoRequest(ARC, "JI2001234500", 7, vecTime)
	f, _ := Decode(ARC, req)
	if _, err := ParseEchoResponse(f, 7); !errors.Is(err, ErrEchoed) {
		t.Errorf("own request: %v", err)
	}
	b, _ := EchoResponse(ARC, "JI2001234500", 8, "")
	f, _ = Decode(ARC, b)
	if _, err := ParseEchoResponse(f, 7); !errors.Is(err, ErrWrongSequence) {
		t.Errorf("other sequence: %v", err)
	}
	for _, hid := range []string{"000000000000", "            ", "JI20012345XY", "ji2001234500", "0JI200123450"} {
		b, _ := EchoResponse(ARC, hid, 7, "")
		f, _ := Decode(ARC, b)
		if _, err := ParseEchoResponse(f, 7); !errors.Is(err, ErrBadID) {
			t.Errorf("header %q: %v", hid, err)
		}
	}
	b, _ = Encode(ARC, "JI2001234500", 0xFF8E60, []byte{0xDF, 0x82, 0x08, 0x03, 0, 0, 7})
	f, _ = Decode(ARC, b)
	if _, err := ParseEchoResponse(f, 7); !errors.Is(err, ErrWrongType) {
		t.Errorf("init response: %v", err)
	}
}

func TestFiscalIDFromHeader(t *testing.T) {
	for _, tc := range []struct{ h, want string }{
		{"JI2001234500", "JI20012345"},
		{"JI2001234000", "JI20012340"}, // ends in 0: never trimmed away
		{"FP1234567800", "FP12345678"},
		{"00FT40050248", "FT40050248"},
		{"AV0000017893", "AV0000017893"},
		{"000000000000", ""},
		{"JI20012345  ", ""},
		{"J120012345 0", ""},
		{"JI200123", ""},
	} {
		got, ok := FiscalIDFromHeader(tc.h)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%q → %q %v, want %q", tc.h, got, ok, tc.want)
		}
	}
	for _, s := range []string{"JI20012345", "FT40050248", "AV0000017893", "FP12345678"} {
		if !ValidFiscalID(s) {
			t.Errorf("%s rejected", s)
		}
	}
	for _, s := range []string{"", "JI2001234", "ji20012345", "JI2001234X", "1I20012345", "JI20012345 ", "JI200123456"} {
		if ValidFiscalID(s) {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestHeaderID(t *testing.T) {
	for _, tc := range []struct {
		d      Dialect
		in, hd string
	}{
		{ARC, "", "000000000000"}, {T300, "", "000000000000"},
		{ARC, "JI20012345", "JI2001234500"}, {CCITT, "JI20012345", "JI2001234500"},
		{T300, "FT40050248", "00FT40050248"}, {ARC, "AV0000017893", "AV0000017893"},
	} {
		got, err := HeaderID(tc.d, tc.in)
		if err != nil || got != tc.hd {
			t.Errorf("%s %q → %q %v", tc.d, tc.in, got, err)
		}
	}
	if _, err := HeaderID(ARC, "JI200123456789"); err == nil {
		t.Error("13 bytes accepted")
	}
	if _, err := HeaderID(ARC, "JI\n0012345"); err == nil {
		t.Error("control byte accepted")
	}
}

func TestParseDialect(t *testing.T) {
	for _, d := range Dialects() {
		got, err := ParseDialect(strings.ToUpper(d.String()))
		if err != nil || got != d {
			t.Errorf("%s: %v %v", d, got, err)
		}
	}
	if _, err := ParseDialect("auto"); !errors.Is(err, ErrUnknownDialect) {
		t.Errorf("auto: %v", err)
	}
}

// TestShiftedHeader: a reply whose id starts 2 bytes after len, the length
// and check covering those 2 bytes too.
func TestShiftedHeader(t *testing.T) {
	for _, d := range Dialects() {
		hid, _ := HeaderID(d, "JI20012345")
		good, _ := EchoResponse(d, hid, 42, "")
		inner := append([]byte{0x00, 0x1D}, good[3:len(good)-1-d.CheckLen()]...)
		frame := []byte{STX, 0, byte(len(inner))}
		frame = append(frame, inner...)
		frame = d.appendCheck(frame, inner)
		frame = append(frame, ETX)
		f, err := Decode(d, frame)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if !f.Shifted || f.Prefix != [2]byte{0x00, 0x1D} {
			t.Fatalf("%s: not seen as shifted: %+v", d, f)
		}
		r, err := ParseEchoResponse(f, 42)
		if err != nil || r.FiscalID != "JI20012345" {
			t.Fatalf("%s: %+v %v", d, r, err)
		}
	}
}

// TestHuginLengthQuirk: Hugin's encoder writes the high length byte as
// (N+1)/256, one too many when N mod 256 = 255.
func TestHuginLengthQuirk(t *testing.T) {
	body := make([]byte, 0, 300)
	body = appendTLV(body, TagSequence, BCD(9, 3))
	body = appendTLV(body, TagResult, []byte("00"))
	// pad with an unknown tag so that N = 255: 12+3+blen(2)+len(body) = 255
	pad := 255 - 12 - 3 - 2 - len(body) - 5 // tag 3 + length 81 xx
	body = appendTLV(body, 0xDF8299, make([]byte, pad))
	frame, err := Encode(ARC, "JI2001234500", TypeEchoResponse, body)
	if err != nil {
		t.Fatal(err)
	}
	if n := int(frame[1])<<8 | int(frame[2]); n != 255 {
		t.Fatalf("test frame has N = %d", n)
	}
	frame[1] = 1 // as Hugin writes it
	f, err := Decode(ARC, frame)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEchoResponse(f, 9); err != nil {
		t.Fatal(err)
	}
}

func TestScannerFindsFrameInNoise(t *testing.T) {
	good := mustHex(t, vecRespARC)
	bad := append([]byte(nil), good...)
	bad[len(bad)-2] ^= 0xFF // checksum
	stream := []byte{0, 0, 0, 0x02, 0xFF, 0xFF, 0x55, 0x02, 0x00}
	stream = append(stream, bad...)
	stream = append(stream, 0x15, 0x06, 0x02)
	stream = append(stream, good...)
	for chunk := 1; chunk <= len(stream); chunk++ {
		s := Scanner{Dialect: ARC}
		var got []Frame
		var errs []error
		for i := 0; i < len(stream); {
			i += s.Feed(stream[i:min(i+chunk, len(stream))])
			for {
				f, err := s.Next()
				if errors.Is(err, ErrNeedMore) {
					break
				}
				if err != nil {
					errs = append(errs, err)
					continue
				}
				got = append(got, f)
			}
		}
		if len(got) != 1 || got[0].ID != "JI2001234500" {
			t.Fatalf("chunk %d: frames %+v", chunk, got)
		}
		var sawChecksum bool
		for _, e := range errs {
			if !errors.Is(e, ErrBadFrame) {
				t.Fatalf("chunk %d: untyped error %v", chunk, e)
			}
			sawChecksum = sawChecksum || errors.Is(e, ErrChecksum)
		}
		if !sawChecksum {
			t.Fatalf("chunk %d: checksum error not reported: %v", chunk, errs)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := mustHex(t, vecRespARC)
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"no etx":    {mut(func(b []byte) []byte { b[len(b)-1] = 0; return b }), ErrNoETX},
		"checksum":  {mut(func(b []byte) []byte { b[10] ^= 1; return b }), ErrChecksum},
		"short len": {mut(func(b []byte) []byte { b[2] = 3; return b }), ErrLength},
		"huge len":  {mut(func(b []byte) []byte { b[1] = 0xFF; return b }), ErrLength},
		"truncated": {good[:len(good)-4], ErrLength},
		"trailing":  {append(mut(func(b []byte) []byte { return b }), 0), ErrLength},
		"no header": {func() []byte { b, _ := Encode(ARC, "JI2001234500", 0x112233, []byte{1, 1, 1}); return b }(), ErrHeader},
	} {
		if _, err := Decode(ARC, tc.b); !errors.Is(err, tc.want) || !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestParseTLVsBounds(t *testing.T) {
	for _, b := range [][]byte{{0xDF}, {0xDF, 0x82}, {0xDF, 0x82, 0x08}, {0xDF, 0x82, 0x08, 0x05, 1}, {0x01, 0x83, 0, 0, 0}} {
		if _, err := ParseTLVs(b); !errors.Is(err, ErrBadBER) {
			t.Errorf("%x: %v", b, err)
		}
	}
	many := make([]byte, 2*(maxTLVs+1))
	for i := 0; i < len(many); i += 2 {
		many[i] = 0x01
	}
	if _, err := ParseTLVs(many); !errors.Is(err, ErrBadBER) {
		t.Errorf("too many tlvs: %v", err)
	}
}
