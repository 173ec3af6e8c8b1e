package gmp3

import (
	"errors"
	"runtime"
	"testing"
	"time"
)

// scanAll runs b through a scanner of dialect d in chunks of chunk bytes and
// returns the frames accepted.
func scanAll(t testing.TB, d Dialect, b []byte, chunk int) int {
	s := Scanner{Dialect: d}
	frames := 0
	for i := 0; i < len(b); {
		n := s.Feed(b[i:min(i+chunk, len(b))])
		if n == 0 && chunk > 0 {
			t.Fatalf("scanner took nothing with %d bytes buffered", s.Buffered())
		}
		i += n
		for {
			f, err := s.Next()
			if errors.Is(err, ErrNeedMore) {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrBadFrame) {
					t.Fatalf("untyped error %v", err)
				}
				continue
			}
			frames++
			if len(f.ID) != IDLen || len(f.Body) > MaxFrame {
				t.Fatalf("frame out of bounds: %+v", f)
			}
			if r, err := ParseEchoResponse(f, 1); err == nil {
				if !ValidFiscalID(r.FiscalID) || r.Result != ResultOK {
					t.Fatalf("accepted %+v", r)
				}
			}
			_, _ = ParseEchoRequest(f)
		}
		if s.Buffered() >= MaxFrame {
			t.Fatalf("scanner holds %d bytes after draining", s.Buffered())
		}
	}
	return frames
}

// FuzzScanner feeds arbitrary bytes to the frame reader of every dialect:
// it must never panic, never hold more than a frame, and allocate at most a
// constant plus a bounded amount per input byte.
func FuzzScanner(f *testing.F) {
	for _, v := range []string{vecReqARC, vecReqCCITT, vecReqT300, vecRespARC, vecResp03, vecFactSheet} {
		f.Add(mustHex(f, v), uint8(7))
	}
	r, _ := EchoRequest(T300, "000000000000", 999999, time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC))
	f.Add(r, uint8(1))
	f.Add([]byte{STX, 0xFF, 0xFF}, uint8(3))
	f.Add([]byte{STX, 0x01, 0xFF, STX, 0x00, 0x10}, uint8(2))
	f.Add(make([]byte, 64), uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		if len(b) > 64<<10 {
			return
		}
		c := int(chunk)
		if c == 0 {
			c = len(b) + 1
		}
		for _, d := range Dialects() {
			var frames int
			// The fuzzing engine allocates beside us: take the least of
			// three measurements.
			alloc := ^uint64(0)
			for range 3 {
				alloc = min(alloc, allocated(func() { frames = scanAll(t, d, b, c) }))
			}
			// The scanner's buffer (2·MaxFrame), the parsed TLVs per frame
			// and the errors per rejected candidate; never a copy of the input.
			if limit := uint64(3*MaxFrame + 64*len(b) + 4096*frames); alloc > limit {
				t.Fatalf("%s: %d bytes in allocated %d (limit %d)", d, len(b), alloc, limit)
			}
			if fr, err := Decode(d, b); err == nil {
				_, _ = ParseTLVs(fr.Body)
			}
		}
	})
}

// allocated returns the bytes f allocates (not exact under a concurrent
// GC, but an over-count only makes the bound stricter).
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestBoundedAllocation: a megabyte of noise costs the scanner its buffer
// and nothing in proportion to the noise.
func TestBoundedAllocation(t *testing.T) {
	noise := make([]byte, 1<<20)
	for i := range noise {
		noise[i] = byte(i*7 + i>>8)
	}
	zeros := make([]byte, 1<<20)
	stx := make([]byte, 1<<20) // STX + huge length, again and again
	for i := 0; i+3 <= len(stx); i += 3 {
		stx[i], stx[i+1], stx[i+2] = STX, 0x0F, 0xF0
	}
	for name, in := range map[string][]byte{"noise": noise, "zeros": zeros, "stx": stx} {
		var s Scanner
		n := allocated(func() {
			for i := 0; i < len(in); {
				i += s.Feed(in[i:min(i+512, len(in))])
				for {
					if _, err := s.Next(); errors.Is(err, ErrNeedMore) {
						break
					}
				}
			}
		})
		// The buffer (8 KiB) and a few error values for candidates that
		// reached their checksum; the race detector adds some.
		if n > 32<<10 {
			t.Errorf("%s: scanning 1 MiB allocated %d bytes", name, n)
		}
		t.Logf("%s: 1 MiB scanned with %d bytes allocated", name, n)
		if s.Dropped < len(in)-MaxFrame {
			t.Errorf("%s: dropped only %d", name, s.Dropped)
		}
	}
}
