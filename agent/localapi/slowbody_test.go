package localapi_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
)

// postHead is the request line and headers of a POST whose body is still
// to come.
func postHead(addr, host, auth string, contentLength int) string {
	if host == "" {
		host = addr
	}
	h := "POST /v1/kasa HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\n"
	if auth != "" {
		h += "Authorization: Bearer " + auth + "\r\n"
	}
	return h + fmt.Sprintf("Content-Length: %d\r\n\r\n", contentLength)
}

// answerThenEOF reads one answer on c and then waits for the server to
// close the connection; it returns the answer and how long the close took.
func answerThenEOF(t *testing.T, c net.Conn, wait time.Duration) (*http.Response, localapi.ErrorBody, time.Duration, bool) {
	t.Helper()
	t0 := time.Now()
	c.SetReadDeadline(t0.Add(wait))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var eb localapi.ErrorBody
	json.Unmarshal(b, &eb)
	_, err = br.ReadByte()
	return resp, eb, time.Since(t0), err != nil && !isTimeout(err)
}

// TestNoDrainAfterRefusal: after a 401, 413, 421 or 403 the
// server closes the connection at once, without reading the body that the
// client announced and has not sent; the connection stops counting
// against MaxConns. On the code before, the server waited to drain up to
// 256 KiB of the body (up to RequestTimeout, 30 s) after answering 401,
// and read 64 KiB of an oversized body before its 413.
func TestNoDrainAfterRefusal(t *testing.T) {
	s, addr := serve(t, apiHandler(t), localapi.ServerOptions{})
	cases := []struct {
		name, head string
		want       int
	}{
		{"no token, 200000", postHead(addr, "", "", 200000), http.StatusUnauthorized},
		{"wrong token, 60000", postHead(addr, "", "wrong", 60000), http.StatusUnauthorized},
		{"token, 200000", postHead(addr, "", token, 200000), http.StatusRequestEntityTooLarge},
		{"foreign Host, 60000", postHead(addr, "evil.example", token, 60000), http.StatusMisdirectedRequest},
		{"foreign Origin, 60000", strings.Replace(postHead(addr, "", token, 60000), "\r\n\r\n", "\r\nOrigin: http://evil.example\r\n\r\n", 1), http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.head+"{"); err != nil {
				t.Fatal(err)
			}
			resp, eb, took, closed := answerThenEOF(t, c, 3*time.Second)
			if resp.StatusCode != tc.want || eb.Error == "" {
				t.Errorf("answer %d %+v, want %d with a JSON error", resp.StatusCode, eb, tc.want)
			}
			if !closed {
				t.Fatalf("the connection was still open %v after the %d: the server waits for the body", took, resp.StatusCode)
			}
			if took > 2*time.Second {
				t.Errorf("closed after %v, want at once", took)
			}
		})
	}
	// A POS with a wrong token that sent its whole body at once reads the
	// 401 and its message (no reset for the unread body).
	head, tail := `{"integration_id":"whole",`, `"note":"x"}`
	body := head + strings.Repeat(" ", 60000-len(head)-len(tail)) + tail
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, postHead(addr, "", "wrong", len(body))+body)
		resp, eb, _, closed := answerThenEOF(t, c, 3*time.Second)
		c.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(eb.Error, "token") || !closed {
			t.Fatalf("whole body, wrong token: %d %+v closed=%v", resp.StatusCode, eb, closed)
		}
	}
	waitStats(t, s, func(st localapi.ServerStats) bool { return st.Open == 0 })
}

// TestSlowBodyIsClosed: a body that does not arrive at the
// minimum rate (here 16 KiB within 300 ms, then 32 KiB/s) is answered 408
// and its connection closed within the window; a body that keeps the rate
// is served. On the code before, a body could take RequestTimeout (30 s).
func TestSlowBodyIsClosed(t *testing.T) {
	const grace = 300 * time.Millisecond
	s, addr := serve(t, apiHandler(t), localapi.ServerOptions{BodyGrace: grace})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, postHead(addr, "", token, 60000)+`{"id":7,"description":"`)
	done := make(chan struct{})
	go func() { // a byte every 50 ms
		defer close(done)
		for range 100 {
			time.Sleep(50 * time.Millisecond)
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	resp, eb, took, closed := answerThenEOF(t, c, 5*time.Second)
	c.Close()
	<-done
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(eb.Error, "too slowly") || !closed {
		t.Errorf("slow body: %d %+v closed=%v, want 408 and the connection closed", resp.StatusCode, eb, closed)
	}
	if took > grace+time.Second {
		t.Errorf("slow body closed after %v, want about %v", took, grace)
	}
	if st := s.Stats(); st.SlowBodies != 1 {
		t.Errorf("stats %+v: want 1 slow body", st)
	}

	// 60000 bytes in four parts, 100 ms apart: within the rate.
	head, tail := `{"integration_id":"paced",`, `"note":"x"}`
	body := head + strings.Repeat(" ", 60000-len(head)-len(tail)) + tail
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, postHead(addr, "", token, len(body)))
	for i := 0; i < len(body); i += 16000 {
		c2.Write([]byte(body[i:min(i+16000, len(body))]))
		time.Sleep(100 * time.Millisecond)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp2, err := http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusAccepted {
		t.Errorf("paced body: %d, want 202", resp2.StatusCode)
	}
}

// TestStalledBodyMakesRoom: every slot holds a connection
// stuck in its body; a POS request on a new connection takes the place
// of the one stalled longest and is served. On the code before, a
// connection inside a request was never closed to make room: the POS got
// 503.
func TestStalledBodyMakesRoom(t *testing.T) {
	const max = 8
	s, addr := serve(t, apiHandler(t), localapi.ServerOptions{MaxConns: max, BodyGrace: time.Minute})
	var stuck []net.Conn
	for range max {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, postHead(addr, "", token, 60000)+"{")
		stuck = append(stuck, c)
	}
	waitStats(t, s, func(st localapi.ServerStats) bool { return st.Open == max })
	pos := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for i := range 3 {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/kasa", strings.NewReader(fmt.Sprintf(`{"integration_id":"pos-%d","description":"x"}`, i)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := pos.Do(req)
		if err != nil {
			t.Fatalf("POS request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("POS request %d: %d, want 202", i, resp.StatusCode)
		}
	}
	closed := 0
	for _, c := range stuck {
		if closedByPeer(c, 10*time.Millisecond) {
			closed++
		}
	}
	// The first POS request took a stuck connection's place; the next
	// ones found the slot it left.
	if st := s.Stats(); closed < 1 || st.Evicted < 1 || st.Refused != 0 {
		t.Errorf("stats %+v, %d stuck connections closed: want ≥ 1 evicted, none refused", st, closed)
	}
}
