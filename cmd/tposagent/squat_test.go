package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/internal/config"
)

// TestCLIRefusesASquatter: a program holding the API port
// that answers every request 200 receives no Authorization header and no
// token from any client command (checked on the bytes it got); each
// command fails saying another program holds the port, with what the
// agent wrote about its port. On the code before the challenge, "status"
// sent "Authorization: Bearer <token>" and printed the squatter's answer.
func TestCLIRefusesASquatter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					mu.Lock()
					req.Write(&got)
					mu.Unlock()
					io.Copy(io.Discard, req.Body)
					body := `{"hmac":"00","registered":true,"license":{"state":"licensed"},"items":[]}`
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
				}
			}()
		}
	}()
	defer func() { ln.Close(); wg.Wait() }()

	dir := t.TempDir()
	c := config.Default()
	c.DataDir = dir
	c.TPOSL.URL, c.Oduyo.BaseURL = "https://t.example.com/TPOSL", "https://o.example.com"
	c.API.Listen = ln.Addr().String()
	c.API.Token = "squat-test-token-0123456789"
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, config.Encode(&c), 0o600)
	note := "the local API cannot listen on " + c.API.Listen + " since 2026-12-06T07:00:00Z: another program holds the port"
	os.WriteFile(filepath.Join(dir, agent.APIWaitFile), []byte(note+"\n"), 0o600)

	for _, args := range [][]string{{"status"}, {"status", "--json"}, {"license"}, {"outbox", "dead"}, {"outbox", "retry", "7"}} {
		code, out, errOut := runCLI(t, append([]string{"--config", path}, args...)...)
		first, _, _ := strings.Cut(strings.TrimSpace(errOut), "\n")
		if code == exitOK || !strings.Contains(first, "another program holds "+c.API.Listen) || !strings.Contains(first, note) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q: want a failure saying another program holds the port, with the agent's note", args, code, out, errOut)
		}
	}
	ln.Close()
	wg.Wait()
	if s := got.String(); strings.Contains(strings.ToLower(s), "authorization") || strings.Contains(s, c.API.Token.Reveal()) || !strings.Contains(s, "/v1/hello?nonce=") {
		t.Errorf("the squatter received:\n%s", s)
	}
}
