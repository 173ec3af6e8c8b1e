package localapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tposagent/tposagent/agent/license"
)

// Client calls the local API of a running agent (the CLI uses it).
//
// It proves the server before it sends the token: every connection it
// opens first asks GET /v1/hello?nonce=N (a fresh random nonce) and goes
// on only when the answer is HMAC-SHA256(token, N); otherwise the request
// fails with ErrNotAgent and the token never leaves. Safe for concurrent
// use once built; the fields must not change after the first call.
type Client struct {
	// BaseURL is e.g. "http://127.0.0.1:8787".
	BaseURL string
	Token   string
	HTTP    *http.Client // nil: a client with a 10 s timeout
	// AgentNote (optional) returns what the agent itself says about its
	// port when it cannot listen (the CLI reads it from the data dir); it
	// is added to ErrNotAgent and ErrNotRunning errors.
	AgentNote func() string

	once sync.Once
	hc   *http.Client // HTTP with a transport that proves each connection
	// preflight: HTTP has a transport of its own, so a hello request
	// goes before each call instead.
	preflight bool
}

// ErrNotAgent means the program answering on the API address did not
// prove that it knows the token: another program holds the port, or the
// agent runs with another api.token. The token was not sent.
var ErrNotAgent = errors.New("the program on the local API port is not this agent")

// ErrNotRunning means nothing answers on the API address.
var ErrNotRunning = errors.New("no tposagent is running")

// APIError is an error answer of the API.
type APIError struct {
	StatusCode int
	Message    string
	Field      string
}

func (e *APIError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s (field %s, HTTP %d)", e.Message, e.Field, e.StatusCode)
	}
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.StatusCode)
}

// BaseURLFor turns an api.listen address into a URL a client can dial:
// an unspecified host (0.0.0.0, ::, "") becomes loopback.
func BaseURLFor(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Do sends a request with body (nil for none) and decodes a 2xx answer
// into out (nil to discard).
func (c *Client) Do(ctx context.Context, method, path string, body []byte, out any) error {
	err := c.do(ctx, method, path, body, out)
	if c.AgentNote != nil && (errors.Is(err, ErrNotAgent) || errors.Is(err, ErrNotRunning)) {
		if note := c.AgentNote(); note != "" {
			err = fmt.Errorf("%w; the agent says: %s", err, note)
		}
	}
	return err
}

func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	hc := c.client()
	if c.preflight {
		if err := c.proveRequest(ctx, hc); err != nil {
			return err
		}
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, rd)
	if err != nil {
		return fmt.Errorf("local API request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, ErrNotAgent) {
			return errors.Unwrap(err) // the *url.Error's own: it says it all
		}
		if isRefused(err) {
			return fmt.Errorf("%w at %s (start it: tposagent start, or run it: tposagent run)", ErrNotRunning, c.BaseURL)
		}
		return fmt.Errorf("local API at %s: %w", c.BaseURL, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("local API: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb.Error = strings.TrimSpace(string(data))
		}
		if resp.StatusCode == http.StatusUnauthorized {
			eb.Error = "the agent refused the token: api.token in the config differs from the running agent's (restart it after editing the config)"
		}
		return &APIError{StatusCode: resp.StatusCode, Message: eb.Error, Field: eb.Field}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("local API: decode answer: %w", err)
	}
	return nil
}

func isRefused(err error) bool {
	var ue *url.Error
	if errors.As(err, &ue) && errors.Is(ue.Err, syscall.ECONNREFUSED) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// License is GET /v1/license.
func (c *Client) License(ctx context.Context) (license.License, error) {
	var l license.License
	err := c.Do(ctx, http.MethodGet, "/v1/license", nil, &l)
	return l, err
}

// Enqueue posts a column object to /v1/kasa or /v1/special-codes.
func (c *Client) Enqueue(ctx context.Context, path string, column []byte) (Accepted, error) {
	var a Accepted
	err := c.Do(ctx, http.MethodPost, path, column, &a)
	return a, err
}

// List returns up to limit items of state (pending or dead), oldest
// first, paging through GET /v1/outbox as needed.
func (c *Client) List(ctx context.Context, state string, limit int) ([]ItemView, error) {
	var out []ItemView
	cursor := ""
	for len(out) < limit {
		items, next, err := c.ListPage(ctx, state, cursor, min(limit-len(out), MaxListLimit))
		out = append(out, items...)
		if err != nil || next == "" {
			return out, err
		}
		cursor = next
	}
	return out, nil
}

// ListPage is one GET /v1/outbox: up to limit items (at most
// MaxListLimit) after cursor ("" from the start), and the cursor of the
// next page ("" when there is none). An answer that broke off after some
// items returns them, the cursor to go on from, and its error.
func (c *Client) ListPage(ctx context.Context, state, cursor string, limit int) ([]ItemView, string, error) {
	var out struct {
		Items      []ItemView `json:"items"`
		NextCursor string     `json:"next_cursor"`
		Error      string     `json:"error"`
	}
	path := fmt.Sprintf("/v1/outbox?state=%s&limit=%d", url.QueryEscape(state), limit)
	if cursor != "" {
		path += "&cursor=" + url.QueryEscape(cursor)
	}
	if err := c.Do(ctx, http.MethodGet, path, nil, &out); err != nil {
		return nil, "", err
	}
	if out.Error != "" {
		return out.Items, out.NextCursor, errors.New(out.Error)
	}
	return out.Items, out.NextCursor, nil
}

// Device is GET /v1/device.
func (c *Client) Device(ctx context.Context) (Device, error) {
	var d Device
	err := c.Do(ctx, http.MethodGet, "/v1/device", nil, &d)
	return d, err
}

// ReportDevice is PUT /v1/device.
func (c *Client) ReportDevice(ctx context.Context, r DeviceReport) (Device, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Device{}, fmt.Errorf("report device: %w", err)
	}
	var d Device
	err = c.Do(ctx, http.MethodPut, "/v1/device", body, &d)
	return d, err
}

// client builds, once, the HTTP client whose connections are proved.
func (c *Client) client() *http.Client {
	c.once.Do(func() {
		hc := &http.Client{Timeout: 10 * time.Second}
		if c.HTTP != nil {
			cp := *c.HTTP
			hc = &cp
		}
		var base *http.Transport
		switch t := hc.Transport.(type) {
		case nil:
			base = http.DefaultTransport.(*http.Transport)
		case *http.Transport:
			base = t
		default:
			c.preflight = true
			c.hc = hc
			return
		}
		t := base.Clone()
		t.Proxy = nil // the agent is on this machine: never through a proxy
		dial := t.DialContext
		if dial == nil {
			dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
		}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if err := c.proveConn(ctx, conn, addr); err != nil {
				conn.Close()
				return nil, err
			}
			return conn, nil
		}
		hc.Transport = t
		c.hc = hc
	})
	return c.hc
}

// maxHelloAnswer bounds what is read of a hello answer.
const maxHelloAnswer = 16 << 10

// proveConn asks the hello challenge on a new connection, before the
// transport sends anything on it.
func (c *Client) proveConn(ctx context.Context, conn net.Conn, addr string) error {
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	defer conn.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(conn, "GET /v1/hello?nonce=%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tposagent-cli\r\nAccept: application/json\r\n\r\n", nonce, addr); err != nil {
		return fmt.Errorf("local API at %s: hello: %w", addr, err)
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return c.notAgent(addr, "it did not answer the hello challenge with HTTP: "+err.Error())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHelloAnswer))
	if err != nil {
		return c.notAgent(addr, "its answer to the hello challenge broke off: "+err.Error())
	}
	if why := c.checkHello(resp.StatusCode, data, nonce); why != "" {
		return c.notAgent(addr, why)
	}
	if resp.Close || br.Buffered() > 0 {
		return c.notAgent(addr, "it closed the connection after the hello challenge or sent more than its answer")
	}
	return nil
}

// proveRequest is the hello challenge as a request of its own, for an
// HTTP client with its own transport.
func (c *Client) proveRequest(ctx context.Context, hc *http.Client) error {
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	u, err := url.Parse(strings.TrimRight(c.BaseURL, "/") + "/v1/hello?nonce=" + nonce)
	if err != nil {
		return fmt.Errorf("local API request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("local API request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if isRefused(err) {
			return fmt.Errorf("%w at %s (start it: tposagent start, or run it: tposagent run)", ErrNotRunning, c.BaseURL)
		}
		return fmt.Errorf("local API at %s: %w", c.BaseURL, errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHelloAnswer))
	if err != nil {
		return c.notAgent(u.Host, "its answer to the hello challenge broke off: "+err.Error())
	}
	if why := c.checkHello(resp.StatusCode, data, nonce); why != "" {
		return c.notAgent(u.Host, why)
	}
	return nil
}

// checkHello returns why a hello answer is not the agent's ("" when it is).
func (c *Client) checkHello(code int, data []byte, nonce string) string {
	switch code {
	case http.StatusOK:
	case http.StatusMisdirectedRequest:
		return "it refused the Host name with 421: if it is the agent, add the name to api.allowed_hosts"
	case http.StatusUnauthorized:
		return "it answered the hello challenge 401, as only a tposagent older than this CLI would"
	default:
		return fmt.Sprintf("it answered the hello challenge with HTTP %d", code)
	}
	var h Hello
	if err := json.Unmarshal(data, &h); err != nil || h.HMAC == "" {
		return "its answer to the hello challenge has no hmac"
	}
	got, err := hex.DecodeString(h.HMAC)
	want, _ := hex.DecodeString(HelloMAC(c.Token, nonce))
	if err != nil || !hmac.Equal(got, want) {
		return "its answer to the hello challenge does not match api.token"
	}
	return ""
}

func (c *Client) notAgent(addr, why string) error {
	return &notAgentError{addr: addr, why: why}
}

// notAgentError is ErrNotAgent with the address and the reason, in one
// line a person can act on.
type notAgentError struct{ addr, why string }

func (e *notAgentError) Error() string {
	return fmt.Sprintf("another program holds %s (%s), so the token was not sent: find it with %s and stop it, or change api.listen; if you edited api.token, restart the agent",
		e.addr, e.why, PortHint(e.addr))
}

func (e *notAgentError) Is(target error) bool { return target == ErrNotAgent }

// PortHint is the command that names the program holding addr's port.
func PortHint(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		port = addr
	}
	if runtime.GOOS == "windows" {
		return "netstat -ano | findstr :" + port
	}
	return "ss -ltnp 'sport = :" + port + "'"
}

// newNonce is 32 random bytes in hex.
func newNonce() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("hello nonce: %w", err)
	}
	return hex.EncodeToString(b), nil
}
