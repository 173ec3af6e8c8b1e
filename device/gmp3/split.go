package gmp3

import "encoding/binary"

// Splitter finds frames in a byte stream that may carry noise: garbage, a
// flood of zeros, half a frame. Bytes that cannot start a plausible frame
// are dropped one at a time, so a frame after noise is still found. It never
// holds more than one frame's worth of bytes beyond the last Feed.
//
// A Splitter is not safe for concurrent use.
type Splitter struct {
	store []byte // backing array, reused; live bytes are store[r:w]
	r, w  int
	buf   []byte // store[r:w]
	// Dropped counts bytes discarded as noise; DroppedZeros those that were 0x00.
	Dropped, DroppedZeros int
}

// Feed appends bytes read from the stream.
func (s *Splitter) Feed(p []byte) {
	if s.w+len(p) > len(s.store) {
		live := s.w - s.r
		if live+len(p) > len(s.store) {
			grown := make([]byte, max(2*len(s.store), live+len(p), 512))
			copy(grown, s.store[s.r:s.w])
			s.store = grown
		} else {
			copy(s.store, s.store[s.r:s.w])
		}
		s.r, s.w = 0, live
	}
	s.w += copy(s.store[s.w:], p)
	s.buf = s.store[s.r:s.w]
}

// Next returns the next candidate frame (length prefix included) without
// consuming it, or nil when more bytes are needed. A candidate has a
// plausible header (length in range, printable id, a GMP-3 type, a body
// length that fills the frame); the caller decodes it and then calls
// Advance(len(frame)) on success, or Skip to drop its first byte and look
// for a frame inside it. The slice is valid until the next Feed.
func (s *Splitter) Next() []byte {
	for len(s.buf) > 0 {
		n, ok := s.plausible()
		if !ok {
			s.Skip()
			continue
		}
		if n == 0 || len(s.buf) < 2+n {
			return nil
		}
		return s.buf[:2+n]
	}
	return nil
}

// Advance consumes n bytes (a frame the caller accepted).
func (s *Splitter) Advance(n int) {
	n = min(n, len(s.buf))
	s.r += n
	s.buf = s.store[s.r:s.w]
}

// Skip drops the first buffered byte as noise.
func (s *Splitter) Skip() {
	if len(s.buf) == 0 {
		return
	}
	s.Dropped++
	if s.buf[0] == 0 {
		s.DroppedZeros++
	}
	s.r++
	s.buf = s.store[s.r:s.w]
}

// Buffered is the number of bytes held: a partial frame waiting for the rest.
func (s *Splitter) Buffered() int { return len(s.buf) }

// Reset forgets buffered bytes and counters.
func (s *Splitter) Reset() { *s = Splitter{store: s.store} }

// plausible checks the header bytes present so far. n is the frame length
// once known (0 while fewer than 2 bytes are buffered).
func (s *Splitter) plausible() (n int, ok bool) {
	b := s.buf
	if len(b) < 2 {
		return 0, true
	}
	n = int(binary.BigEndian.Uint16(b))
	if n < MinFrameLen || n > MaxFrameLen {
		return 0, false
	}
	for i := 2; i < min(len(b), 2+IDLen); i++ {
		if b[i] < 0x20 || b[i] > 0x7E {
			return 0, false
		}
	}
	if len(b) > 14 && b[14] != 0xFF {
		return 0, false
	}
	if len(b) > 17 {
		blen, hl, err := readBERLen(b[17:])
		switch {
		case err == ErrTruncated:
		case err != nil:
			return 0, false
		case 15+hl+blen+1 != n:
			return 0, false
		}
	}
	return n, true
}
