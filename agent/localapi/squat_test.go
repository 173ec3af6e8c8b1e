package localapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
)

// Squatter is a program that holds the API port: it records every byte
// it receives and answers each request with answer (nil: closes at once).
type Squatter struct {
	ln     net.Listener
	answer func(req *http.Request) string
	mu     sync.Mutex
	got    bytes.Buffer
	wg     sync.WaitGroup
}

// StartSquatter listens on addr ("127.0.0.1:0" for any port).
func StartSquatter(t *testing.T, addr string, answer func(req *http.Request) string) *Squatter {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Squatter{ln: ln, answer: answer}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(io.TeeReader(c, s))
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if s.answer == nil {
						return
					}
					if _, err := io.WriteString(c, s.answer(req)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

func (s *Squatter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.Write(p)
}

// Got is every byte the squatter received.
func (s *Squatter) Got() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got.String()
}

func (s *Squatter) Addr() string { return s.ln.Addr().String() }

// Close stops listening and waits for the connections.
func (s *Squatter) Close() {
	s.ln.Close()
	s.wg.Wait()
}

func jsonAnswer(code int, body string) string {
	return fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", code, http.StatusText(code), len(body), body)
}

// TestClientProvesServerBeforeToken: a program holding the
// port — whatever it answers — receives no Authorization header and no
// token from the client, checked on the bytes it got; the error says
// another program holds the port. On the code before the challenge the
// first request carried "Authorization: Bearer <token>".
func TestClientProvesServerBeforeToken(t *testing.T) {
	answers := map[string]func(*http.Request) string{
		"wrong hmac":         func(*http.Request) string { return jsonAnswer(200, `{"hmac":"`+strings.Repeat("ab", 32)+`"}`) },
		"200 to everything":  func(*http.Request) string { return jsonAnswer(200, `{}`) },
		"401 like old agent": func(*http.Request) string { return jsonAnswer(401, `{"error":"missing or wrong token"}`) },
		"404":                func(*http.Request) string { return jsonAnswer(404, `{"error":"no"}`) },
		"not http":           func(*http.Request) string { return "SSH-2.0-OpenSSH_9.6\r\n" },
		"closes":             nil,
		"hmac of another token": func(r *http.Request) string {
			return jsonAnswer(200, `{"hmac":"`+localapi.HelloMAC("another-token-0123456789", r.URL.Query().Get("nonce"))+`"}`)
		},
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			sq := StartSquatter(t, "127.0.0.1:0", answer)
			for _, hc := range []*http.Client{nil, {Timeout: 5 * time.Second}, {Transport: roundTripper{http.DefaultTransport}}} {
				c := &localapi.Client{BaseURL: "http://" + sq.Addr(), Token: token, HTTP: hc}
				_, err := c.Status(context.Background())
				if err == nil {
					t.Fatal("the client trusted the squatter")
				}
				if name != "closes" && name != "not http" && !errors.Is(err, localapi.ErrNotAgent) {
					t.Errorf("err = %v, want ErrNotAgent", err)
				}
				if errors.Is(err, localapi.ErrNotAgent) && (!strings.Contains(err.Error(), "another program holds "+sq.Addr()) || strings.Contains(err.Error(), "\n")) {
					t.Errorf("err = %q: want one line saying another program holds %s", err, sq.Addr())
				}
				if _, err := c.Enqueue(context.Background(), "/v1/kasa", []byte(`{"id":1}`)); err == nil {
					t.Fatal("the client posted to the squatter")
				}
			}
			http.DefaultTransport.(*http.Transport).CloseIdleConnections()
			sq.Close()
			got := sq.Got()
			if !strings.Contains(got, "GET /v1/hello?nonce=") {
				t.Errorf("the squatter was not asked the challenge: %q", got)
			}
			if strings.Contains(strings.ToLower(got), "authorization") || strings.Contains(got, token) {
				t.Errorf("the squatter received the token:\n%s", got)
			}
			if strings.Contains(got, "/v1/status") || strings.Contains(got, "/v1/kasa") {
				t.Errorf("the squatter received a request after failing the challenge:\n%s", got)
			}
		})
	}
}

// roundTripper hides the *http.Transport: the client cannot prove each
// connection and asks the challenge as a request of its own.
type roundTripper struct{ rt http.RoundTripper }

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return r.rt.RoundTrip(req)
}

// TestClientProvesTheAgent: against the real agent API the challenge
// passes and the calls work, with each kind of HTTP client.
func TestClientProvesTheAgent(t *testing.T) {
	_, addr := serve(t, apiHandler(t), localapi.ServerOptions{})
	for _, hc := range []*http.Client{nil, {Timeout: 5 * time.Second}, {Transport: roundTripper{http.DefaultTransport}}} {
		c := &localapi.Client{BaseURL: "http://" + addr, Token: token, HTTP: hc}
		for range 3 {
			if _, err := c.Status(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A client with another token is refused before it sends it.
	c := &localapi.Client{BaseURL: "http://" + addr, Token: "another-token-0123456789"}
	if _, err := c.Status(context.Background()); !errors.Is(err, localapi.ErrNotAgent) || !strings.Contains(err.Error(), "if you edited api.token, restart the agent") {
		t.Errorf("another token: %v, want ErrNotAgent saying to restart the agent", err)
	}
}
