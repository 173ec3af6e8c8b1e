package gmp3

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrNeedMore is returned by Scanner.Next when the buffered bytes hold no
// complete frame yet. It is not a frame error.
var ErrNeedMore = errors.New("need more bytes")

// Scanner finds frames of one dialect in a byte stream that may carry noise:
// garbage, a flood of zeros, half a frame, a frame with a bad check. Bytes
// before an STX are dropped; a candidate that turns out bad is dropped with
// an error and the search goes on after it, so a good frame after noise is
// still found. It holds at most one frame (MaxFrame bytes) plus the last
// Feed, reusing its buffer.
//
// A Scanner is not safe for concurrent use.
type Scanner struct {
	Dialect Dialect
	// Dropped counts bytes discarded as noise, DroppedZeros those that were
	// 0x00; Rejected counts candidate frames that failed a check.
	Dropped, DroppedZeros, Rejected int

	store []byte // backing array; live bytes are store[r:w]
	r, w  int
}

// Feed appends bytes read from the stream, as many of p as fit, and
// returns how many it took. After Next has returned ErrNeedMore at least
// MaxFrame bytes fit, so a caller feeds, drains Next, and feeds the rest.
func (s *Scanner) Feed(p []byte) int {
	s.dropNoise()
	if s.store == nil {
		s.store = make([]byte, 2*MaxFrame)
	}
	if s.r > 0 && len(p) > len(s.store)-s.w {
		live := copy(s.store, s.store[s.r:s.w])
		s.r, s.w = 0, live
	}
	n := copy(s.store[s.w:], p)
	s.w += n
	return n
}

// dropNoise drops bytes before the first STX.
func (s *Scanner) dropNoise() {
	for s.r < s.w && s.store[s.r] != STX {
		s.skip(1)
	}
}

func (s *Scanner) skip(n int) {
	for _, c := range s.store[s.r : s.r+n] {
		s.Dropped++
		if c == 0 {
			s.DroppedZeros++
		}
	}
	s.r += n
}

// Buffered is the number of bytes held: a partial frame waiting for more.
func (s *Scanner) Buffered() int { return s.w - s.r }

// Reset forgets buffered bytes (not the counters).
func (s *Scanner) Reset() { s.r, s.w = 0, 0 }

// Next returns the next frame. ErrNeedMore: feed more bytes. Any other
// error is a rejected candidate (already dropped); call Next again.
func (s *Scanner) Next() (Frame, error) {
	s.dropNoise()
	b := s.store[s.r:s.w]
	if len(b) < 3 {
		return Frame{}, ErrNeedMore
	}
	c := s.Dialect.CheckLen()
	n := int(binary.BigEndian.Uint16(b[1:3]))
	total := 3 + n + c + 1
	// Hugin's encoder computes the high length byte as (N+1)/256: for
	// N mod 256 = 255 it is one too many. Such a frame ends 256 bytes early.
	if alt := total - 0x100; n&0xFF == 0xFF && n-0x100 >= minLen && len(b) >= alt &&
		b[alt-1] == ETX && s.Dialect.checkOK(b[3:3+n-0x100], b[3+n-0x100:alt-1]) {
		n, total = n-0x100, alt
	}
	if n < minLen || total > MaxFrame {
		s.reject(1)
		return Frame{}, ErrLength
	}
	if !plausibleHeader(b) {
		// A stray STX (noise, or a byte inside a frame): without this
		// check its "length" could make us wait for bytes that never come.
		s.reject(1)
		return Frame{}, ErrHeader
	}
	if len(b) < total {
		return Frame{}, ErrNeedMore
	}
	if b[total-1] != ETX {
		s.reject(1)
		return Frame{}, ErrNoETX
	}
	body := b[3 : 3+n]
	if !s.Dialect.checkOK(body, b[3+n:3+n+c]) {
		s.reject(total)
		return Frame{}, fmt.Errorf("%s check %x: %w", s.Dialect, b[3+n:3+n+c], ErrChecksum)
	}
	f, err := parse(s.Dialect, body)
	if err != nil {
		s.reject(total)
		return Frame{}, fmt.Errorf("frame of %d bytes: %w", total, err)
	}
	s.r += total
	return f, nil
}

func (s *Scanner) reject(n int) {
	s.Rejected++
	s.skip(n)
}

// plausibleHeader checks, as far as b goes, that a message type FF 8x
// follows the id at offset 0 or 2 after len.
func plausibleHeader(b []byte) bool {
	at := func(i int) bool { // the type could start at b[i]
		return len(b) <= i || b[i] == 0xFF && (len(b) <= i+1 || b[i+1]&0xF0 == 0x80)
	}
	return at(3+IDLen) || at(3+quirkShift+IDLen)
}
