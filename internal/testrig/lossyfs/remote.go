//go:build linux

package lossyfs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// serveEnv names the mount point a child started by StartRemote serves.
const serveEnv = "LOSSYFS_SERVE_DIR"

// Remote is a lossy filesystem served by a child process (the test binary
// run again; its TestMain calls MaybeServe first). A process must not
// serve a FUSE mount whose files it maps itself: a Go stop-the-world
// waits for the thread blocked in a page fault on the mount, which waits
// for the server's goroutines, which are stopped — the process hangs. A
// test that opens a bbolt file (mapped) on the mount serves it from a
// child. Every method is safe for concurrent use.
type Remote struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
	mu  chanMutex
}

type chanMutex chan struct{}

func (m chanMutex) lock()   { m <- struct{}{} }
func (m chanMutex) unlock() { <-m }

type remoteReq struct {
	Op      string   `json:"op"` // "fail", "stats"
	Failure *Failure `json:"failure,omitempty"`
}

type remoteRes struct {
	Err   string `json:"err,omitempty"`
	Stats Stats  `json:"stats"`
}

// StartRemote mounts a new FS at dir (an existing empty directory) in a
// child process and returns when it is mounted.
func StartRemote(dir string) (*Remote, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the lossyfs server: %w", err)
	}
	r := &Remote{cmd: cmd, in: in, out: bufio.NewScanner(out), mu: make(chanMutex, 1)}
	if !r.out.Scan() || r.out.Text() != "mounted" {
		_ = in.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("the lossyfs server did not mount %s (%q)", dir, r.out.Text())
	}
	return r, nil
}

func (r *Remote) call(q remoteReq) (remoteRes, error) {
	r.mu.lock()
	defer r.mu.unlock()
	b, _ := json.Marshal(q)
	if _, err := r.in.Write(append(b, '\n')); err != nil {
		return remoteRes{}, err
	}
	if !r.out.Scan() {
		return remoteRes{}, errors.New("the lossyfs server is gone")
	}
	var res remoteRes
	if err := json.Unmarshal(r.out.Bytes(), &res); err != nil {
		return remoteRes{}, err
	}
	if res.Err != "" {
		return res, errors.New(res.Err)
	}
	return res, nil
}

// SetFailure is FS.SetFailure in the child.
func (r *Remote) SetFailure(fl Failure) error {
	_, err := r.call(remoteReq{Op: "fail", Failure: &fl})
	return err
}

// Stats is FS.Stats in the child.
func (r *Remote) Stats() (Stats, error) {
	res, err := r.call(remoteReq{Op: "stats"})
	return res.Stats, err
}

// Close unmounts and waits for the child (close every file on the mount
// first); a child that has not ended after 15 s is killed.
func (r *Remote) Close() error {
	_ = r.in.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
		return errors.New("the lossyfs server did not end within 15 s (a file still open on the mount?); killed")
	}
}

// MaybeServe, called first in a TestMain, serves the mount when the test
// binary runs as StartRemote's child, and exits.
func MaybeServe() {
	dir := os.Getenv(serveEnv)
	if dir == "" {
		return
	}
	signal.Ignore(syscall.SIGINT)
	fsys := New(Options{})
	if err := fsys.Mount(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Println("mounted")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var q remoteReq
		var res remoteRes
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			res.Err = err.Error()
		} else {
			switch q.Op {
			case "fail":
				if q.Failure == nil {
					q.Failure = &Failure{}
				}
				if err := fsys.SetFailure(*q.Failure); err != nil {
					res.Err = err.Error()
				}
			case "stats":
			default:
				res.Err = "unknown op " + q.Op
			}
		}
		res.Stats = fsys.Stats()
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
	code := 0
	if err := fsys.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}
