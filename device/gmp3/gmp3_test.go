package gmp3

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
	"time"
)

// Byte-exact vectors from spec/gmp3-echo-vectors.md.
const (
	vecRequest  = "0026202020202020202020202020ff8a6415df820803000001df820903261123df820a0303374333"
	vecResponse = "004420204a493230303132333435ff8e6433df820803000001df820d023030dfc10a08494e47454e49434fdfc10b06495745323830dfc10c0c4a485745323030303030373941"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEchoRequestVector(t *testing.T) {
	at := time.Date(2026, 11, 23, 3, 37, 43, 0, time.Local)
	got := EchoRequest(1, at)
	if want := mustHex(t, vecRequest); !bytes.Equal(got, want) {
		t.Fatalf("request\n got %x\nwant %x", got, want)
	}
	r, err := ParseEchoRequest(got)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sequence != 1 || !r.Time.Equal(at) {
		t.Fatalf("parsed %+v", r)
	}
}

func TestEchoResponseVector(t *testing.T) {
	want := mustHex(t, vecResponse)
	got, err := EncodeEchoResponse(Response{FiscalSerial: "JI20012345", Sequence: 1, Brand: "INGENICO", Model: "IWE280", ECRSerial: "JHWE20000079"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("response\n got %x\nwant %x", got, want)
	}
	r, err := ParseEchoResponse(want, 1)
	if err != nil {
		t.Fatal(err)
	}
	exp := Response{FiscalSerial: "JI20012345", Sequence: 1, Result: "00", Brand: "INGENICO", Model: "IWE280", ECRSerial: "JHWE20000079"}
	if r != exp {
		t.Fatalf("got %+v\nwant %+v", r, exp)
	}
}

func TestTurkishText(t *testing.T) {
	in := Response{FiscalSerial: "JI20012345", Sequence: 42, Brand: "Hugin ÖKC Şirketi", Model: "Tığ-ğüşİıÇ", ECRSerial: "JHWE20000079"}
	b, err := EncodeEchoResponse(in)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte{0xDE}) { // Ş in Windows-1254
		t.Fatalf("brand not Windows-1254 encoded: %x", b)
	}
	r, err := ParseEchoResponse(b, 42)
	if err != nil {
		t.Fatal(err)
	}
	if r.Brand != in.Brand || r.Model != in.Model {
		t.Fatalf("got %q %q", r.Brand, r.Model)
	}
}

func TestParseEchoResponseErrors(t *testing.T) {
	good := mustHex(t, vecResponse)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	relrc := func(b []byte) []byte { b[len(b)-1] = LRC(b[2 : len(b)-1]); return b }
	resp := func(r Response) []byte {
		b, err := EncodeEchoResponse(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	other, _ := Encode("  JI20012345", 0xFF8E65, []byte{0xDF, 0x82, 0x08, 0x03, 0, 0, 1})
	tests := []struct {
		name string
		in   []byte
		seq  int
		want error
	}{
		{"empty", nil, 1, ErrTruncated},
		{"truncated", good[:40], 1, ErrTruncated},
		{"trailing", append(append([]byte(nil), good...), 0), 1, ErrTooLong},
		{"length too small", []byte{0, 3, 1, 2, 3}, 1, ErrTooLong},
		{"length too big", append([]byte{0xFF, 0xFF}, make([]byte, 100)...), 1, ErrTooLong},
		{"bad lrc", mod(func(b []byte) []byte { b[len(b)-1] ^= 0xFF; return b }), 1, ErrBadLRC},
		{"wrong sequence", good, 2, ErrWrongSequence},
		{"echo of request", EchoRequest(1, time.Now()), 1, ErrEchoed},
		{"wrong type", other, 1, ErrWrongType},
		{"bad body length", mod(func(b []byte) []byte { b[17] = 0x30; return relrc(b) }), 1, ErrBadBER},
		{"tlv overruns", mod(func(b []byte) []byte { b[21] = 0x7F; return relrc(b) }), 1, ErrTruncated},
		{"bad id", resp(Response{FiscalSerial: "12345", Sequence: 1}), 1, ErrBadID},
		{"result code", resp(Response{FiscalSerial: "JI20012345", Sequence: 1, Result: "05"}), 1, ErrResultCode},
		{"bad bcd", mod(func(b []byte) []byte { b[23] = 0x0A; return relrc(b) }), 1, ErrBadBCD},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEchoResponse(tt.in, tt.seq)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.want != ErrResultCode && !errors.Is(err, ErrBadFrame) {
				t.Fatalf("err %v does not match ErrBadFrame", err)
			}
		})
	}
}

func TestValidSerial(t *testing.T) {
	for s, want := range map[string]bool{
		"JI20012345": true, "AB00000000": true, "JHWE20000079": true,
		"J120012345": false, "JI2001234": false, "": false, "JI20012345 ": false, "JHWE2000007!": false,
	} {
		if got := ValidSerial(s); got != want {
			t.Errorf("ValidSerial(%q) = %v", s, got)
		}
	}
}

func TestBCD(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 99, 123456, 999999} {
		got, err := FromBCD(BCD(n, 3))
		if err != nil || got != n {
			t.Errorf("%d: got %d %v", n, got, err)
		}
	}
	if _, err := FromBCD([]byte{0x1A}); !errors.Is(err, ErrBadBCD) {
		t.Errorf("err = %v", err)
	}
	for in, want := range map[int]int{1: 1, 999999: 999999, 0: 1, 1000000: 2, -1: 999999} {
		if got := NormSequence(in); got != want {
			t.Errorf("NormSequence(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestSplitterFindsFrameInNoise(t *testing.T) {
	good := mustHex(t, vecResponse)
	noise := []byte("\x00\x00\x00\xff\x00\x26garbage\r\n\x00\x44  JI")
	var s Splitter
	stream := append(append(append([]byte(nil), noise...), good...), 0, 0)
	var found [][]byte
	for i := 0; i < len(stream); i += 7 { // fed in small pieces
		s.Feed(stream[i:min(i+7, len(stream))])
		for f := s.Next(); f != nil; f = s.Next() {
			if _, err := ParseEchoResponse(f, 1); err != nil {
				s.Skip()
				continue
			}
			found = append(found, append([]byte(nil), f...))
			s.Advance(len(f))
		}
	}
	if len(found) != 1 || !bytes.Equal(found[0], good) {
		t.Fatalf("found %x", found)
	}
	if s.Dropped < len(noise) || s.DroppedZeros < 3 {
		t.Fatalf("dropped %d (%d zeros)", s.Dropped, s.DroppedZeros)
	}
}

func TestSplitterZeroFlood(t *testing.T) {
	var s Splitter
	s.Feed(make([]byte, 1<<16))
	if f := s.Next(); f != nil {
		t.Fatalf("frame in zeros: %x", f)
	}
	if s.Buffered() > 1 || s.DroppedZeros < 1<<16-1 {
		t.Fatalf("buffered %d, zeros %d", s.Buffered(), s.DroppedZeros)
	}
}
