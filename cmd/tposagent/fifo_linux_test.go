package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunRefusesAFIFOConfig: `run --config <FIFO>` blocked
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

// TestOtherCommandsRefuseAFIFOConfig: the commands that read the config
// file's bytes themselves — bugreport (when the config does not parse),
// and start/stop/restart/uninstall (serviceSpec) — read a FIFO the same
// way: on the code before, os.ReadFile blocked in the open until a writer
// came (and `bugreport`, with its signal handler, ignored SIGTERM: seen
// with the real binary); now bugreport writes its zip with the error
// noted and serviceSpec falls back to the defaults at once.
func TestOtherCommandsRefuseAFIFOConfig(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "config.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	unblock := func() { // let the old code's open return
		if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			w.Close()
		}
	}
	done := make(chan string, 1)
	go func() {
		code, _, errOut := runCLI(t, "bugreport", "-o", filepath.Join(dir, "b.zip"), "--config", fifo)
		done <- fmt.Sprintf("exit %d, stderr %q", code, errOut)
	}()
	select {
	case r := <-done:
		if _, err := os.Stat(filepath.Join(dir, "b.zip")); err != nil {
			t.Errorf("bugreport with a FIFO config: %s; no zip: %v", r, err)
		}
	case <-time.After(10 * time.Second):
		unblock()
		<-done
		t.Fatal("bugreport --config FIFO blocked")
	}
	specDone := make(chan struct{})
	go func() { serviceSpec(fifo); close(specDone) }()
	select {
	case <-specDone:
	case <-time.After(10 * time.Second):
		unblock()
		<-specDone
		t.Fatal("serviceSpec (start/stop/restart/uninstall) blocked on a FIFO config")
	}
}
