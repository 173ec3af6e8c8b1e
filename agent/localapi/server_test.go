package localapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/outbox"
)

// serve runs a localapi.Server over h on a loopback port until the test
// ends (and waits for it).
func serve(t *testing.T, h http.Handler, o localapi.ServerOptions) (*localapi.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := localapi.NewServer(h, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// apiHandler is the real API over a real outbox file.
func apiHandler(t *testing.T) http.Handler {
	t.Helper()
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return localapi.NewHandler(localapi.Config{
		Token:   token,
		Queue:   agent.LocalQueue(q),
		Status:  func() localapi.Status { return localapi.Status{Version: "test", License: tposl.Unknown("x")} },
		License: func() license.License { return tposl.Unknown("x") },
	})
}

// rawRequest sends req as bytes on a new connection and reads the answer.
func rawRequest(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// headerOf builds a GET whose request line and headers are exactly n bytes.
func headerOf(n int) string {
	head := "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + token + "\r\nX-Pad: "
	tail := "\r\n\r\n"
	return head + strings.Repeat("p", n-len(head)-len(tail)) + tail
}

// TestHeaderCap: request line and headers up to MaxHeaderBytes are read;
// one byte more is answered 431, as JSON, and the connection closed.
func TestHeaderCap(t *testing.T) {
	_, addr := serve(t, apiHandler(t), localapi.ServerOptions{})
	resp, body := rawRequest(t, addr, headerOf(localapi.MaxHeaderBytes))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("headers of exactly %d bytes: %d, want 200 (%s)", localapi.MaxHeaderBytes, resp.StatusCode, body)
	}
	resp, body = rawRequest(t, addr, headerOf(localapi.MaxHeaderBytes+1))
	var eb localapi.ErrorBody
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("headers of %d bytes: %d, want 431 (%s)", localapi.MaxHeaderBytes+1, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &eb); err != nil || !strings.Contains(eb.Error, "16384 bytes") {
		t.Errorf("431 body %q: want a JSON error naming the limit (%v)", body, err)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("431 content type %q", ct)
	}
	// A malformed request line gets the JSON shape too.
	resp, body = rawRequest(t, addr, "NOT HTTP\r\n\r\n")
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &eb) != nil || eb.Error == "" {
		t.Errorf("malformed request: %d %q, want 400 with a JSON error", resp.StatusCode, body)
	}
}

// TestBodyLimit: the one body limit is the largest record: a valid record
// of exactly MaxBody bytes is accepted, one byte more is 413 and nothing
// is stored.
func TestBodyLimit(t *testing.T) {
	srv, q := newServer(t, 0)
	// JSON white space pads the record: every text field has a limit.
	head, tail := `{"integration_id":"big",`, `"note":"x"}`
	exact := head + strings.Repeat(" ", localapi.MaxBody-len(head)-len(tail)) + tail
	if code, _, raw := do(t, srv, "POST", "/v1/kasa", exact); code != http.StatusAccepted {
		t.Fatalf("record of exactly %d bytes: %d, want 202 (%s)", len(exact), code, raw)
	}
	over := head + strings.Repeat(" ", localapi.MaxBody-len(head)-len(tail)+1) + tail
	code, eb, _ := do(t, srv, "POST", "/v1/kasa", over)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(eb.Error, fmt.Sprint(localapi.MaxBody)) {
		t.Errorf("record of %d bytes: %d %q, want 413 naming the limit", len(over), code, eb.Error)
	}
	if n := pending(t, q); n != 1 {
		t.Errorf("queue holds %d, want 1", n)
	}
}

// trickle opens a connection and sends the start of a request that never
// ends.
func trickle(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /v1/status HTTP/1.1\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByPeer reports whether the server closes c within wait.
func closedByPeer(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestConnLimitServesThePOS: every slot is held by a connection that has
// not finished its headers; a client that sends its request at once is
// still served, the oldest hostile connection is the one closed, and an
// idle keep-alive connection of the POS outlives the hostile ones.
func TestConnLimitServesThePOS(t *testing.T) {
	const max = 8
	s, addr := serve(t, apiHandler(t), localapi.ServerOptions{MaxConns: max, HeaderTimeout: time.Minute})
	pos := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer pos.CloseIdleConnections()
	get := func() (time.Duration, bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/status", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		t0 := time.Now()
		resp, err := pos.Do(req)
		if err != nil {
			t.Fatalf("POS request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POS request: %d", resp.StatusCode)
		}
		return time.Since(t0), true
	}
	get() // the POS's keep-alive connection, idle from now on

	var hostile []net.Conn
	for range max - 1 {
		hostile = append(hostile, trickle(t, addr))
	}
	waitStats(t, s, func(st localapi.ServerStats) bool { return st.Open == max })
	// Each new hostile connection pushes out the oldest hostile one.
	for i := range 3 {
		hostile = append(hostile, trickle(t, addr))
		if !closedByPeer(hostile[i], 5*time.Second) {
			t.Fatalf("hostile connection %d (the oldest) was not closed to make room", i)
		}
	}
	if closedByPeer(hostile[len(hostile)-1], 200*time.Millisecond) {
		t.Errorf("the newest hostile connection was closed instead of the oldest")
	}
	// The POS's idle keep-alive connection survived: its next request
	// needs no new connection and is answered.
	if d, _ := get(); d > time.Second {
		t.Errorf("POS request took %v with every slot taken", d)
	}
	st := s.Stats()
	if st.Evicted < 3 || st.Open > max {
		t.Errorf("stats %+v: want ≥ 3 evicted, ≤ %d open", st, max)
	}
	// A new connection of a POS is served too.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/license", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := fresh.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("new POS connection with every slot taken: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestConnLimitNeverCutsARequest: when every connection is inside a
// request, a new one gets a 503 (JSON, Retry-After) and the running
// requests finish.
func TestConnLimitNeverCutsARequest(t *testing.T) {
	const max = 4
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(max)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Done()
		<-release
		io.WriteString(w, "done")
	})
	s, addr := serve(t, h, localapi.ServerOptions{MaxConns: max})
	var wg sync.WaitGroup
	errs := make(chan error, max)
	for range max {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + addr + "/")
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "done" {
				errs <- fmt.Errorf("answer %q", b)
			}
		}()
	}
	entered.Wait()
	resp, body := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	var eb localapi.ErrorBody
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || json.Unmarshal(body, &eb) != nil {
		t.Errorf("with every connection in a request: %d %q, want 503 JSON with Retry-After", resp.StatusCode, body)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a request in flight was cut: %v", err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Evicted != 0 {
		t.Errorf("stats %+v: want 1 refused, 0 evicted", st)
	}
}

// TestHeaderTimeout: a connection that does not finish its headers in
// time is closed.
func TestHeaderTimeout(t *testing.T) {
	_, addr := serve(t, apiHandler(t), localapi.ServerOptions{HeaderTimeout: 200 * time.Millisecond})
	c := trickle(t, addr)
	t0 := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c)
	if isTimeout(err) {
		t.Fatalf("the server kept a connection without headers open for %v", time.Since(t0))
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
}

// TestServeStopsWithARequestInFlight: at stop, a request still running
// after the grace has its context cancelled and Serve returns.
func TestServeStopsWithARequestInFlight(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{})
	cancelled := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // a request that would otherwise never end
		close(cancelled)
	})
	const grace = 300 * time.Millisecond
	s := localapi.NewServer(h, localapi.ServerOptions{ShutdownGrace: grace})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	client := make(chan struct{})
	go func() {
		defer close(client)
		if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	t0 := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5 s of the stop")
	}
	d := time.Since(t0)
	select {
	case <-cancelled:
	default:
		t.Error("the request's context was not cancelled")
	}
	if d < grace || d > grace+time.Second {
		t.Errorf("Serve returned %v after the stop, want the grace (%v) and little more", d, grace)
	}
	<-client
}

func waitStats(t *testing.T, s *localapi.Server, cond func(localapi.ServerStats) bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(s.Stats()); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("server stats %+v never reached the expected state", s.Stats())
		}
	}
}

// TestConnLimitSilentFlood: every slot holds a connection that has sent
// nothing. Another silent one waits aside for MinAge, then is refused; a
// POS whose request arrives whole takes the place of the oldest silent
// one and is served, also when its request comes a moment after its
// connection.
func TestConnLimitSilentFlood(t *testing.T) {
	const max = 4
	const minAge = 300 * time.Millisecond
	s, addr := serve(t, apiHandler(t), localapi.ServerOptions{MaxConns: max, MinAge: minAge, HeaderTimeout: time.Minute})
	var silent []net.Conn
	for range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		silent = append(silent, c)
		waitStats(t, s, func(st localapi.ServerStats) bool { return st.Open == len(silent) })
	}
	// One more silent connection: refused with a 503 after MinAge. The
	// server counts MinAge from its accept, which can come before Dial
	// returns here: the clock starts before the dial (after it, the
	// refusal measured 299.9 ms once in CI).
	t0 := time.Now()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(c); !strings.HasPrefix(string(b), "HTTP/1.1 503") {
		t.Errorf("a silent newcomer with every slot silent: %q, want a 503", b)
	}
	if d := time.Since(t0); d < minAge || d > minAge+2*time.Second {
		t.Errorf("refused after %v, want after MinAge (%v)", d, minAge)
	}
	// A POS request: served, in place of the oldest silent connection.
	resp, body := rawRequest(t, addr, "GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+token+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Fatalf("POS request with every slot silent: %d %s", resp.StatusCode, body)
	}
	if !closedByPeer(silent[0], 5*time.Second) {
		t.Errorf("the oldest silent connection was not the one closed")
	}
	if closedByPeer(silent[max-1], 100*time.Millisecond) {
		t.Errorf("the newest silent connection was closed")
	}
	if st := s.Stats(); st.Refused != 1 || st.Evicted != 1 {
		t.Errorf("stats %+v: want 1 refused, 1 evicted", st)
	}

	// A POS whose request follows its connection 50 ms later.
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	time.Sleep(50 * time.Millisecond) // the client is slow to write, on purpose: not a wait for a timer
	late.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(late, "GET /v1/license HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+token+"\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(late), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a POS request 50 ms behind its connection: %v %v", resp, err)
	}
	resp.Body.Close()
}

// flakyListener fails its first Accept with a temporary error, as a
// process out of file descriptors sees.
type flakyListener struct {
	net.Listener
	once sync.Once
}

type tempErr struct{}

func (tempErr) Error() string   { return "accept: too many open files" }
func (tempErr) Timeout() bool   { return false }
func (tempErr) Temporary() bool { return true }

func (l *flakyListener) Accept() (net.Conn, error) {
	var failed bool
	l.once.Do(func() { failed = true })
	if failed {
		return nil, tempErr{}
	}
	return l.Listener.Accept()
}

// TestServeSurvivesTemporaryAcceptErrors: after a temporary accept error
// the server goes on accepting.
func TestServeSurvivesTemporaryAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := localapi.NewServer(apiHandler(t), localapi.ServerOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, &flakyListener{Listener: ln}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	resp, body := rawRequest(t, ln.Addr().String(), "GET /v1/license HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+token+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("after a temporary accept error: %d %s", resp.StatusCode, body)
	}
}

// TestWaitingAsideGivesWay: with every slot taken and as many silent
// connections waiting aside as allowed, a new silent connection takes the
// place of the one waiting longest, which is closed without an answer;
// a POS request is still served.
func TestWaitingAsideGivesWay(t *testing.T) {
	const max = 1
	s, addr := serve(t, apiHandler(t), localapi.ServerOptions{MaxConns: max, MinAge: time.Minute, HeaderTimeout: time.Minute})
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial() // takes the one slot
	waitStats(t, s, func(st localapi.ServerStats) bool { return st.Open == max })
	// Four per slot wait aside; they are accepted one by one, in order.
	var aside []net.Conn
	for range 4 * max {
		aside = append(aside, dial())
	}
	if closedByPeer(aside[0], 300*time.Millisecond) {
		t.Fatal("a connection waiting aside was closed before the limit of those waiting was reached")
	}
	dial() // one more: the longest waiting gives way
	if !closedByPeer(aside[0], 5*time.Second) {
		t.Errorf("the connection waiting aside longest did not give way")
	}
	if closedByPeer(aside[len(aside)-1], 200*time.Millisecond) {
		t.Errorf("the newest connection waiting aside was closed")
	}
	resp, body := rawRequest(t, addr, "GET /v1/license HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "+token+"\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("POS request with every slot taken and many waiting aside: %d %s", resp.StatusCode, body)
	}
	if st := s.Stats(); st.RefusedWaiting < 1 {
		t.Errorf("stats %+v: want the connection that gave way counted", st)
	}
}
