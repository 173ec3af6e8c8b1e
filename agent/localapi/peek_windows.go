package localapi

import (
	"net"
	"time"
)

// readNow reads what has already arrived on c, waiting at most a
// millisecond (an overlapped socket read cannot be made non-blocking
// here).
func readNow(c net.Conn, buf []byte) (int, error) {
	return readWithin(c, buf, time.Millisecond)
}
