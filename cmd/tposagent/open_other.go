//go:build !windows

package main

import (
	"os/exec"
	"runtime"
)

// defaultBrowser opens url with the desktop's opener.
func defaultBrowser(url string) *exec.Cmd {
	if runtime.GOOS == "darwin" {
		return exec.Command("open", url)
	}
	return exec.Command("xdg-open", url)
}
