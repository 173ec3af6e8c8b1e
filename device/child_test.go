package device_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// child is a running child of the test binary.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	err   error // its exit, once stop has waited for it
}

// startChild starts cmd and waits for its "ready" line.
func startChild(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: in, out: bufio.NewReader(out)}
	line, err := c.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		c.stop()
		t.Fatalf("child not ready: %q %v", line, err)
	}
	t.Cleanup(func() { c.stop() })
	return c
}

// stop closes the child's stdin, returns the rest of its output and waits
// for it. Safe to call twice.
func (c *child) stop() string {
	if c.stdin == nil {
		return ""
	}
	c.stdin.Close()
	c.stdin = nil
	rest, _ := io.ReadAll(c.out)
	c.err = c.cmd.Wait()
	return strings.TrimSpace(string(rest))
}
