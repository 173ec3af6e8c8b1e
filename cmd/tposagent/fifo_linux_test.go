package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunRefusesAFIFOConfig: issue 23 (10). `run --config <FIFO>` blocked
// in the open on the old code (and, with the signal handler installed,
// ignored SIGTERM); now it is a clear error at once.
func TestRunRefusesAFIFOConfig(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "config.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI(t, "run", "--config", fifo)
		done <- result{code, out, errOut}
	}()
	select {
	case r := <-done:
		if r.code == 0 || !strings.Contains(r.errOut, "named pipe") || !strings.Contains(r.errOut, "not a regular file") {
			t.Errorf("exit %d, stderr %q", r.code, r.errOut)
		}
	case <-time.After(10 * time.Second):
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil { // let the old code's open return
			w.Close()
		}
		<-done
		t.Fatal("run --config FIFO blocked")
	}
}
