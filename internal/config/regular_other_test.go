//go:build !windows

package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestConfigMustBeARegularFile: `run --config <FIFO>` blocked in open
// (deaf to SIGTERM) on the old code; now a FIFO, a directory or a device
// is a clear error at once, and a symlink to a file still works.
func TestConfigMustBeARegularFile(t *testing.T) {
	dir := t.TempDir()
	{
		fifo := filepath.Join(dir, "fifo.toml")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := Load(fifo); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "named pipe") || !strings.Contains(err.Error(), "regular file") {
				t.Errorf("FIFO: %v", err)
			}
		case <-time.After(5 * time.Second):
			// Unblock the old code's open so that the goroutine ends.
			w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
			if err == nil {
				w.Close()
			}
			<-done
			t.Fatal("Load of a FIFO blocked")
		}
		if _, err := Load("/dev/null"); err == nil || !strings.Contains(err.Error(), "a device") {
			t.Errorf("/dev/null: %v", err)
		}
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "a directory") {
		t.Errorf("directory: %v", err)
	}
	target := write(t, t.TempDir(), validFile)
	link := filepath.Join(dir, "link.toml")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	if _, err := Load(link); err != nil {
		t.Errorf("symlink to a file: %v", err)
	}
}
