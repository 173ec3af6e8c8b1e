//go:build windows

package till

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/mgr"
)

// seq makes service names unique within the test process.
var seq atomic.Int64

type winProc struct {
	name   string
	id     int
	mu     sync.Mutex
	proc   windows.Handle // 0 once the process has ended
	killed atomic.Bool
	tail   *logTail
}

// startProc registers a temporary service "tposagent-test-<pid>-<t>-<n>" for
// "run --service --config F", starts it through the service control
// manager and waits until the manager reports it running. The service is
// deleted when the process has ended. Without the right to create services
// (not an administrator), or with o.child, it starts a child process.
func startProc(o procOptions) (*proc, error) {
	if o.child {
		return startChild(o)
	}
	m, err := mgr.Connect()
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return startChild(o)
	}
	if err != nil {
		return nil, fmt.Errorf("start agent as a service: connect: %w", err)
	}
	// Unique across runs too: process ids repeat (under wine they restart
	// from small numbers), and a run that was itself killed leaves its
	// service behind.
	name := fmt.Sprintf("tposagent-test-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
	s, err := m.CreateService(name, o.bin, mgr.Config{StartType: mgr.StartManual, DisplayName: name},
		"run", "--service", "--config", o.cfgPath)
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		m.Disconnect()
		return startChild(o)
	}
	if err != nil {
		m.Disconnect()
		return nil, fmt.Errorf("start agent as a service: create %s: %w", name, err)
	}
	remove := func() {
		s.Delete()
		s.Close()
		m.Disconnect()
	}
	var logStart int64
	if st, err := os.Stat(o.logFile); err == nil {
		logStart = st.Size()
	}
	if err := s.Start(); err != nil {
		remove()
		return nil, fmt.Errorf("start agent as a service: start %s: %w", name, err)
	}
	var st svc.Status
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st, err = s.Query(); err != nil {
			remove()
			return nil, fmt.Errorf("start agent as a service: query %s: %w", name, err)
		}
		// Running: the process has connected to the manager (a kill
		// before that would leave wine's manager waiting for it, and
		// holding up the next start, until its own timeout).
		if st.State == svc.Running || st.State == svc.Stopped || time.Now().After(deadline) {
			break
		}
	}
	p := &proc{exited: make(chan error, 1)}
	if st.ProcessId == 0 { // ended at once, or never started
		remove()
		p.impl = &winProc{name: name}
		p.exited <- fmt.Errorf("service %s: %v, exit code %d/%d", name, st.State, st.Win32ExitCode, st.ServiceSpecificExitCode)
		(&logTail{path: o.logFile, offset: logStart, out: o.out}).pass()
		return p, nil
	}
	h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_TERMINATE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, st.ProcessId)
	if err != nil {
		s.Control(svc.Stop)
		remove()
		return nil, fmt.Errorf("start agent as a service: open process %d: %w", st.ProcessId, err)
	}
	w := &winProc{name: name, proc: h, id: int(st.ProcessId), tail: &logTail{path: o.logFile, offset: logStart, out: o.out}}
	p.impl = w
	done := make(chan struct{})
	var tail sync.WaitGroup
	tail.Add(1)
	go func() { defer tail.Done(); w.tail.follow(done) }()
	go func() {
		windows.WaitForSingleObject(h, windows.INFINITE)
		var code uint32
		windows.GetExitCodeProcess(h, &code)
		close(done)
		tail.Wait()
		// After a stop the manager marks the service stopped as the process
		// ends; delete it then (a delete before is only marked). After a
		// kill wine's manager may not notice for long: delete at once, the
		// name is never reused.
		for deadline := time.Now().Add(10 * time.Second); !w.killed.Load() && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if st, err := s.Query(); err != nil || st.State == svc.Stopped {
				break
			}
		}
		remove()
		w.mu.Lock()
		windows.CloseHandle(h)
		w.proc = 0
		w.mu.Unlock()
		if code != 0 {
			p.exited <- fmt.Errorf("exit status %d", code)
			return
		}
		p.exited <- nil
	}()
	return p, nil
}

// logTail copies what the agent appends to its log file, from an offset
// on, to out: a service has no stderr, its log file is its output.
type logTail struct {
	mu     sync.Mutex
	path   string
	offset int64
	out    io.Writer
}

// pass copies what is new since the last pass.
func (l *logTail) pass() {
	if l == nil || l.path == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.Open(l.path)
	if err != nil {
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() < l.offset {
		l.offset = 0 // rotated
	}
	if _, err := f.Seek(l.offset, io.SeekStart); err == nil {
		n, _ := io.Copy(l.out, f)
		l.offset += n
	}
}

// follow passes every few milliseconds until done is closed, then once more.
func (l *logTail) follow(done <-chan struct{}) {
	for {
		select {
		case <-done:
			l.pass()
			return
		case <-time.After(20 * time.Millisecond):
			l.pass()
		}
	}
}

// stop sends the service manager's Stop request, as "tposagent stop" and
// the manager at shutdown do.
func (w *winProc) stop() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("stop service %s: %w", w.name, err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(w.name)
	if err != nil {
		return fmt.Errorf("stop service %s: %w", w.name, err)
	}
	defer s.Close()
	if _, err := s.Control(svc.Stop); err != nil && !errors.Is(err, windows.ERROR_SERVICE_NOT_ACTIVE) {
		return fmt.Errorf("stop service %s: %w", w.name, err)
	}
	return nil
}

// kill: TerminateProcess, a crash as the service manager sees it.
func (w *winProc) kill() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.proc == 0 {
		return nil // already ended
	}
	w.killed.Store(true)
	if err := windows.TerminateProcess(w.proc, 1); err != nil && !errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		return fmt.Errorf("kill service %s: %w", w.name, err)
	}
	return nil
}

func (w *winProc) pid() int { return w.id }

// flush copies the log file's new lines to the output now.
func (w *winProc) flush() { w.tail.pass() }

// startChild starts "bin run --config F" as a plain child process, which
// Windows cannot ask to stop: stop fails and the caller kills it.
func startChild(o procOptions) (*proc, error) {
	cmd := exec.Command(o.bin, "run", "--config", o.cfgPath)
	cmd.Env = o.env
	cmd.Stdout, cmd.Stderr = o.out, o.out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{exited: make(chan error, 1), impl: childProc{cmd}}
	go func() { p.exited <- cmd.Wait() }()
	return p, nil
}

type childProc struct{ cmd *exec.Cmd }

// errNoStop: a console process started without the service manager cannot
// be asked to stop from another process on Windows.
var errNoStop = errors.New("windows cannot ask a child process to stop (it runs outside the service manager)")

func (c childProc) stop() error { return errNoStop }
func (c childProc) kill() error { return c.cmd.Process.Kill() }
func (c childProc) pid() int    { return c.cmd.Process.Pid }
func (c childProc) flush()      {}
