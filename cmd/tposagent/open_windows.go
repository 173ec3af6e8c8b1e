package main

import "os/exec"

// defaultBrowser opens url with the program Windows associates with http.
func defaultBrowser(url string) *exec.Cmd {
	return exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
}
