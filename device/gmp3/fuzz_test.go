package gmp3

import (
	"testing"
	"time"
)

// FuzzParseEchoResponse feeds arbitrary bytes to the decoders and the
// splitter: they must never panic, and a frame accepted is within the caps.
func FuzzParseEchoResponse(f *testing.F) {
	f.Add(mustHex(f, vecResponse))
	f.Add(mustHex(f, vecRequest))
	f.Add(EchoRequest(999999, time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)))
	f.Add([]byte{0x00, 0x11, ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', 0xFF, 0x8E, 0x64, 0x82, 0xFF})
	f.Add([]byte{0xFF, 0xFF})
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseEchoResponse(b, 0); err == nil {
			if len(b) > 2+MaxFrameLen || !ValidSerial(r.FiscalSerial) || r.Result != "00" {
				t.Fatalf("accepted %x as %+v", b, r)
			}
		}
		_, _ = ParseEchoRequest(b)
		if fr, err := Decode(b); err == nil {
			_, _ = ParseTLVs(fr.Body)
		}
		var s Splitter
		for i := 0; i < len(b); i += 5 {
			s.Feed(b[i:min(i+5, len(b))])
			for c := s.Next(); c != nil; c = s.Next() {
				if len(c) > 2+MaxFrameLen {
					t.Fatalf("candidate of %d bytes", len(c))
				}
				if _, err := ParseEchoResponse(c, 0); err != nil {
					s.Skip()
				} else {
					s.Advance(len(c))
				}
			}
			if s.Buffered() > 2+MaxFrameLen+5 {
				t.Fatalf("splitter holds %d bytes", s.Buffered())
			}
		}
	})
}
