//go:build linux

package devicetest

import (
	"fmt"
	"os"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// startPTY opens a pseudo-terminal pair: the agent opens the slave by its
// name, the device serves the master.
func (s *Sim) startPTY() error {
	m, sl, err := pty.Open()
	if err != nil {
		return fmt.Errorf("devicetest: open pty: %w", err)
	}
	// pty.Open leaves the master in blocking mode; make it pollable so reads
	// and writes honour deadlines and Close interrupts them.
	master, err := pollable(m)
	if err != nil {
		sl.Close()
		return fmt.Errorf("devicetest: %w", err)
	}
	// A raw line discipline on the slave from the start: no echo, no CR/LF
	// translation, even before the agent opens it.
	if err := rawMode(sl); err != nil {
		master.Close()
		sl.Close()
		return fmt.Errorf("devicetest: raw mode: %w", err)
	}
	s.port = sl.Name()
	// Closing every handle of the pair hangs up the agent's open port; the
	// slave we hold keeps the pty alive across the agent's closes.
	s.hangUp = func() {
		master.Close()
		sl.Close()
	}
	s.closeLine = s.hangUp
	s.send = func(b []byte) error {
		_ = master.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := master.Write(b)
		return err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.serve(master)
	}()
	return nil
}

func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

func rawMode(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var terr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			terr = err
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		terr = unix.IoctlSetTermios(int(fd), unix.TCSETS, t)
	})
	if err != nil {
		return err
	}
	return terr
}
