//go:build linux

package powercut

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
)

// child is the test binary re-run as a worker on the mount (bbolt must
// never be mapped from a FUSE mount by the process that serves it).
type child struct {
	cmd      *exec.Cmd
	stderr   bytes.Buffer
	readDone chan struct{} // stdout is drained
	first    chan struct{} // the first acknowledgement arrived
}

// startChild re-runs the test binary with env set. Every line it prints
// goes to onLine, which reports whether the line acknowledges work.
func startChild(t *testing.T, env string, onLine func(line string) (ack bool)) *child {
	t.Helper()
	c := &child{
		cmd:      exec.Command(os.Args[0], "-test.run=^$"),
		readDone: make(chan struct{}),
		first:    make(chan struct{}),
	}
	c.cmd.Env = append(os.Environ(), env)
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	go func() {
		defer close(c.readDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if onLine(sc.Text()) {
				once.Do(func() { close(c.first) })
			}
		}
	}()
	return c
}

// cut waits for a random moment — mostly once the child has acknowledged
// work, sometimes while it is still opening the file — plus up to
// maxDelay, cuts the power, kills the child and waits for it.
func (c *child) cut(t *testing.T, n int, rnd *rand.Rand, maxDelay int, fsys *lossyfs.FS) lossyfs.CutReport {
	t.Helper()
	if rnd.IntN(5) != 0 {
		select {
		case <-c.first:
		case <-c.readDone:
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
			c.cmd.Wait()
			t.Fatalf("cut %d: the child did not commit within 20 s: %s", n, c.stderr.String())
		}
	}
	time.Sleep(time.Duration(rnd.IntN(maxDelay)) * time.Millisecond)
	rep := fsys.Cut()
	c.cmd.Process.Kill()
	<-c.readDone
	c.cmd.Wait() // killed, or failed on EIO after the cut
	return rep
}
