//go:build !windows

package localapi

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// readNow reads what has already arrived on c without waiting: the
// socket is non-blocking, so a read with nothing there fails at once
// (a deadline cannot do this: an expired one skips the read).
func readNow(c net.Conn, buf []byte) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return readWithin(c, buf, time.Millisecond)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), buf)
		return true // never wait
	}); err != nil {
		return 0, err
	}
	switch {
	case errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) || errors.Is(rerr, syscall.EINTR):
		return 0, nil // nothing yet
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF // the client has gone
	}
	return n, nil
}
