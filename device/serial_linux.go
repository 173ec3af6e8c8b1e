//go:build linux

package device

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// linuxPort is a serial port opened as a guest on the POS's line
// (spec: serial-sharing, "The order that keeps a guest harmless"): it is
// opened non-blocking without being configured, then every lock another
// program may hold is checked — exclusive mode (TIOCGEXCL, honoured even
// as root), flock(LOCK_EX|LOCK_NB) and the UUCP lock files — and only when
// none is held does the port take all three itself, set its line and
// talk. Close gives the line back in reverse order: the line settings as
// they were, exclusive mode off, the lock files, the flock, the fd.
//
// go.bug.st/serial is not used here: it applies its termios settings
// before it sets TIOCEXCL, and it knows neither flock nor lock files.
type linuxPort struct {
	f     *os.File // pollable (non-blocking fd): deadlines hold, Close wakes a read
	fd    int
	name  string
	saved *unix.Termios // the line as another program left it; nil until changed
	excl  bool          // we set TIOCEXCL
	locks []string      // UUCP lock files we created
	once  sync.Once
}

// openSerialPort opens name the guest's way. An error that matches ErrBusy
// means another program holds the port and nothing on it was changed.
func openSerialPort(name string, baud int) (rawPort, error) {
	speed, ok := baudRates[baud]
	if !ok {
		return nil, fmt.Errorf("baud %d is not a standard rate: %w", baud, ErrBadConfig)
	}
	// Opening changes nothing on the line; O_NONBLOCK: an open that would
	// wait for carrier returns at once, and the fd is pollable.
	fd, err := unix.Open(name, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			// A non-root opener of a tty in exclusive mode.
			return nil, fmt.Errorf("%s is in exclusive mode (TIOCEXCL): %w", name, ErrBusy)
		}
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	p := &linuxPort{fd: fd, name: name}
	fail := func(err error) (rawPort, error) {
		p.release()
		return nil, err
	}
	// Not a terminal: no serial port (TCGETS only reads).
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fail(fmt.Errorf("%s is not a serial port (%v): %w", name, err, ErrNoDevice))
	}
	// 1. Exclusive mode set by another opener: root may open anyway, a
	// guest does not.
	if v, err := unix.IoctlGetInt(fd, unix.TIOCGEXCL); err == nil && v != 0 {
		return fail(fmt.Errorf("%s is in exclusive mode (TIOCEXCL) of another program: %w", name, ErrBusy))
	}
	// 2. flock: another open file description holds it.
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); errors.Is(err, unix.EWOULDBLOCK) {
		return fail(fmt.Errorf("%s is locked by another program (flock): %w", name, ErrBusy))
	}
	// 3. UUCP lock files, by the configured name and the device it is.
	locks, err := takeUUCPLocks(name)
	if err != nil {
		return fail(err)
	}
	p.locks = locks
	// Ours now: exclusive mode for the hold, then the line.
	if err := unix.IoctlSetInt(fd, unix.TIOCEXCL, 0); err == nil {
		p.excl = true
	}
	t := *saved
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY | unix.INPCK
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CRTSCTS | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | speed
	t.Ispeed, t.Ospeed = speed, speed
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	p.saved = saved
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return fail(fmt.Errorf("set line of %s: %v: %w", name, err, ErrNoDevice))
	}
	p.f = os.NewFile(uintptr(fd), name) // non-blocking fd: a pollable File
	return p, nil
}

var baudRates = map[int]uint32{
	1200: unix.B1200, 2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600, 19200: unix.B19200,
	38400: unix.B38400, 57600: unix.B57600, 115200: unix.B115200, 230400: unix.B230400,
	460800: unix.B460800, 921600: unix.B921600,
}

func (p *linuxPort) readTimeout(b []byte, d time.Duration) (int, error) {
	_ = p.f.SetReadDeadline(time.Now().Add(d))
	n, err := p.f.Read(b)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, nil
	case errors.Is(err, io.EOF), errors.Is(err, syscall.EIO):
		return n, fmt.Errorf("the line hung up: %w", ErrDisconnected)
	}
	return n, fmt.Errorf("%v: %w", err, ErrDisconnected)
}

func (p *linuxPort) writeTimeout(b []byte, d time.Duration) (int, error) {
	_ = p.f.SetWriteDeadline(time.Now().Add(d))
	n, err := p.f.Write(b)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return n, fmt.Errorf("write: the line did not drain in time: %w", ErrTimeout)
	}
	return n, fmt.Errorf("write: %v: %w", err, ErrDisconnected)
}

// resetInput discards unread input: only ever done while the port holds
// every lock (another program's unread bytes are never flushed).
func (p *linuxPort) resetInput() []byte {
	_ = unix.IoctlSetInt(p.fd, unix.TCFLSH, unix.TCIFLUSH)
	return nil
}

func (p *linuxPort) abort()       { p.release() }
func (p *linuxPort) Close() error { p.release(); return nil }

// drainWait bounds how long the release waits for our last bytes (an ACK)
// to leave before the line settings are put back.
const drainWait = 50 * time.Millisecond

// release gives the line back in reverse order of taking it.
func (p *linuxPort) release() {
	p.once.Do(func() {
		if p.saved != nil {
			for end := time.Now().Add(drainWait); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
				if n, err := unix.IoctlGetInt(p.fd, unix.TIOCOUTQ); err != nil || n == 0 {
					break
				}
			}
			_ = unix.IoctlSetTermios(p.fd, unix.TCSETS, p.saved)
		}
		if p.excl {
			_ = unix.IoctlSetInt(p.fd, unix.TIOCNXCL, 0)
		}
		releaseUUCPLocks(p.locks)
		if p.f != nil {
			_ = p.f.Close() // drops the flock with the last reference
		} else {
			_ = unix.Close(p.fd)
		}
	})
}

// LockDirs are the directories of UUCP lock files (FHS /var/lock; /run/lock
// on current distributions, where /var/lock links to it). A directory that
// is a link to another in the list counts once.
var lockDirs = []string{"/run/lock", "/var/lock"}

// lockNames is every lock file name a program may use for port: LCK.. and
// the base name (minicom, cu, RXTX for /dev/ttyUSB0), and for a device
// below a subdirectory of /dev also the path with '/' as '_' (lockdev:
// /dev/pts/3 → LCK..pts_3) — for the configured name and the device it
// resolves to (/dev/serial/by-id/… → /dev/ttyUSB0).
func lockNames(port string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if n != "" && n != "." && n != "/" && !seen[n] {
			seen[n] = true
			out = append(out, "LCK.."+n)
		}
	}
	paths := []string{port}
	if r, err := filepath.EvalSymlinks(port); err == nil && r != port {
		paths = append(paths, r)
	}
	for _, p := range paths {
		add(filepath.Base(p))
		if rel, ok := cutDev(p); ok {
			add(string(replaceSlash([]byte(rel))))
		}
	}
	return out
}

func cutDev(p string) (string, bool) {
	const dev = "/dev/"
	if len(p) > len(dev) && p[:len(dev)] == dev {
		return p[len(dev):], true
	}
	return "", false
}

func replaceSlash(b []byte) []byte {
	for i, c := range b {
		if c == '/' {
			b[i] = '_'
		}
	}
	return b
}

// uniqueLockDirs is lockDirs that exist, each real directory once.
func uniqueLockDirs() []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range lockDirs {
		r, err := filepath.EvalSymlinks(d)
		if err != nil || seen[r] {
			continue
		}
		if fi, err := os.Stat(r); err != nil || !fi.IsDir() {
			continue
		}
		seen[r] = true
		out = append(out, d)
	}
	return out
}

// ownLocks are the lock files this process holds now, so that a second
// Reader of the process sees its own lock as busy, and a file with our PID
// that none of them holds is recognised as stale.
var ownLocks sync.Map // path → struct{}

// takeUUCPLocks checks every lock file name of port in every lock
// directory and creates the missing ones with our PID (HDB format). A
// live holder means busy: what was taken is given back. A directory we
// may not write (not root, a read-only /run/lock) is only read.
func takeUUCPLocks(port string) ([]string, error) {
	var taken []string
	for _, dir := range uniqueLockDirs() {
		for _, n := range lockNames(port) {
			path := filepath.Join(dir, n)
			ok, err := takeLock(path)
			if err != nil {
				releaseUUCPLocks(taken)
				return nil, fmt.Errorf("%s: %w", port, err)
			}
			if ok {
				taken = append(taken, path)
			}
		}
	}
	return taken, nil
}

// takeLock takes one lock file with Taylor UUCP's algorithm: a temporary
// file with our PID, link()ed to the lock name; an existing lock whose
// process is gone is stale and removed once. (false, nil): the directory
// does not let us create it, and nobody else holds it.
func takeLock(path string) (bool, error) {
	for attempt := 0; attempt < 2; attempt++ {
		if err := checkLock(path); err != nil {
			return false, err
		}
		tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf("LTMP.%d.%d", os.Getpid(), time.Now().UnixNano()))
		if err := os.WriteFile(tmp, fmt.Appendf(nil, "%10d\n", os.Getpid()), 0o644); err != nil {
			return false, nil // read-only for us: checked, not taken
		}
		err := os.Link(tmp, path)
		_ = os.Remove(tmp)
		if err == nil {
			ownLocks.Store(path, struct{}{})
			return true, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return false, nil
		}
		// Someone made it between the check and the link: look again.
	}
	return false, checkLock(path)
}

// staleEmpty is how old a lock file without a PID must be to count as
// stale: a program that has just created it may not have written it yet.
const staleEmpty = 10 * time.Second

// checkLock returns ErrBusy when path names a live process (or is being
// written), removes it when stale, and nil when there is none.
func checkLock(path string) error {
	b, err := readSmall(path, 128)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lock file %s unreadable (%v): %w", path, err, ErrBusy)
	}
	pid, ok := lockPID(b)
	if !ok {
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) < staleEmpty {
			return fmt.Errorf("lock file %s is being written: %w", path, ErrBusy)
		}
		_ = os.Remove(path) // stale: no PID after a while
		return nil
	}
	if pid == os.Getpid() {
		if _, mine := ownLocks.Load(path); mine {
			return fmt.Errorf("lock file %s: held by another reader of this process: %w", path, ErrBusy)
		}
		_ = os.Remove(path) // an earlier process with our PID left it
		return nil
	}
	if err := unix.Kill(pid, 0); err == nil || errors.Is(err, unix.EPERM) {
		return fmt.Errorf("lock file %s held by process %d: %w", path, pid, ErrBusy)
	}
	_ = os.Remove(path) // its process is gone
	return nil
}

// lockPID reads the PID of a lock file: ASCII (HDB, ten characters and a
// newline, leading spaces) or, in old files, a 4-byte binary int.
func lockPID(b []byte) (int, bool) {
	s := string(b)
	n, digits := 0, 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			if n > 1<<22 {
				return 0, false
			}
			n = n*10 + int(c-'0')
			digits++
		case c == ' ' || c == '\n' || c == '\t' || c == '\r':
			if digits > 0 && c != ' ' {
				return n, n > 0
			}
		default:
			if len(b) == 4 && digits == 0 {
				v := int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
				return v, v > 0 && v < 1<<22
			}
			return 0, false
		}
	}
	return n, digits > 0 && n > 0
}

// releaseUUCPLocks removes the lock files we made, each only while it
// still holds our PID.
func releaseUUCPLocks(paths []string) {
	for _, p := range paths {
		ownLocks.Delete(p)
		if b, err := readSmall(p, 128); err == nil {
			if pid, ok := lockPID(b); ok && pid == os.Getpid() {
				_ = os.Remove(p)
			}
		}
	}
}
