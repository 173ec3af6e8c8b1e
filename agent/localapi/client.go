package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/tposagent/tposagent/agent/license"
)

// Client calls the local API of a running agent (the CLI uses it).
type Client struct {
	// BaseURL is e.g. "http://127.0.0.1:8787".
	BaseURL string
	Token   string
	HTTP    *http.Client // nil: a client with a 10 s timeout
}

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
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
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
