package gmp3

import (
	"errors"
	"runtime"
	"testing"
)

// allocated returns the bytes f allocates.
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestBoundedAllocation checks that hostile input much larger than a frame
// costs no memory in proportion to its size.
func TestBoundedAllocation(t *testing.T) {
	huge := make([]byte, 1<<20)
	huge[0], huge[1] = 0xFF, 0xFF // claims 64 KiB
	var err error
	n := allocated(func() {
		for range 10 {
			_, err = ParseEchoResponse(huge, 1)
		}
	})
	if !errors.Is(err, ErrTooLong) {
		t.Fatalf("err = %v", err)
	}
	if n > 16<<10 {
		t.Fatalf("parsing 10 × 1 MiB allocated %d bytes", n)
	}

	// A zero flood and garbage through the splitter, in read-sized pieces.
	chunk := make([]byte, 256)
	for i := range chunk {
		chunk[i] = byte(i * 7)
	}
	var s Splitter
	n = allocated(func() {
		for range (1 << 20) / len(chunk) {
			s.Feed(chunk)
			for c := s.Next(); c != nil; c = s.Next() {
				s.Skip()
			}
		}
	})
	if s.Buffered() > 2+MaxFrameLen {
		t.Fatalf("splitter holds %d bytes", s.Buffered())
	}
	if n > 256<<10 {
		t.Fatalf("splitting 1 MiB of noise allocated %d bytes", n)
	}
}
