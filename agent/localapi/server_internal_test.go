package localapi

import (
	"strings"
	"testing"
)

// TestEndOfHeaders: the blank line that ends the headers is found however
// the reads split it, and not before it has arrived.
func TestEndOfHeaders(t *testing.T) {
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for size := 1; size <= len(req); size++ {
		c := &trackedConn{}
		found := -1
		for off := 0; off < len(req); off += size {
			end := min(off+size, len(req))
			if c.endOfHeaders([]byte(req[off:end])) && found < 0 {
				found = end
			}
		}
		if found != len(req) {
			t.Errorf("reads of %d bytes: end of headers found after %d bytes, want %d", size, found, len(req))
		}
	}
	c := &trackedConn{}
	for _, part := range strings.SplitAfter("GET / HTTP/1.1\r\nX-A: 1\r\nX-B: \r\n 2\r\n", "\r") {
		if c.endOfHeaders([]byte(part)) {
			t.Fatalf("end of headers found in unfinished headers at %q", part)
		}
	}
}
