package oduyo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// API paths below Config.BaseURL.
const (
	LoginPath           = "/api/v1/ws/login"
	KasaUpdatePath      = "/api/v1/erp/erp_kasa_fisi/update"
	SpecialCodePath     = "/api/v1/erp/erp_special_code/create"
	SpecialCodeListPath = "/api/v1/erp/erp_special_code/list"
	// KasaListPath: the public docs show "/api/v1/api/erp/erp_kasa_fisi/list",
	// taken for a typo of the family's pattern (spec/oduyo-list.md).
	KasaListPath = "/api/v1/erp/erp_kasa_fisi/list"
)

// Defaults of Config.
const (
	DefaultTimeout     = 20 * time.Second
	DefaultSessionTTL  = 60 * time.Minute
	DefaultRenewBefore = 5 * time.Minute
)

// maxBody bounds what is read of any answer.
const maxBody = 1 << 20

// Config configures a Client. BaseURL, APIKey, Username and Password are
// required; the rest have defaults.
type Config struct {
	BaseURL, APIKey, Username, Password string

	HTTPClient  *http.Client     // nil = a client with keep-alive; redirects are never followed
	Timeout     time.Duration    // per request, default 20s
	SessionTTL  time.Duration    // default 60m
	RenewBefore time.Duration    // default 5m: log in again this close to expiry
	Now         func() time.Time // default time.Now
	Logger      *slog.Logger     // nil = discard
}

// String shows the configuration with the secrets masked.
func (c Config) String() string {
	return fmt.Sprintf("oduyo.Config{BaseURL:%q Username:%q APIKey:%s Password:%s Timeout:%s SessionTTL:%s RenewBefore:%s}",
		c.BaseURL, c.Username, mask(c.APIKey), mask(c.Password), c.Timeout, c.SessionTTL, c.RenewBefore)
}

// LogValue keeps the secrets out of slog output.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("base_url", c.BaseURL),
		slog.String("username", c.Username),
		slog.String("api_key", mask(c.APIKey)),
		slog.String("password", mask(c.Password)),
	)
}

func mask(s string) string {
	if s == "" {
		return `""`
	}
	return "[redacted]"
}

// Client talks to the Ödüyo ERP API. It is safe for concurrent use; all
// callers share one session.
type Client struct {
	cfg  Config
	base string // BaseURL without a trailing slash
	http *http.Client
	log  *slog.Logger

	mu       sync.Mutex
	session  string
	expires  time.Time
	gen      uint64     // bumped by every login
	inflight *loginCall // the login in progress, if any
	waiting  int        // callers parked on inflight (for tests)
}

type loginCall struct {
	done chan struct{}
	sid  string
	gen  uint64
	err  error
	// abandoned: the caller that logged in was cancelled, so its error
	// says nothing about the server.
	abandoned bool
}

// New checks cfg and returns a client. It does not touch the network.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.BaseURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("oduyo: base_url must be an http or https url such as https://www.siteadi.com")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("oduyo: base_url must not have credentials, a query or a fragment")
	}
	for _, f := range []struct{ name, v string }{{"api_key", cfg.APIKey}, {"username", cfg.Username}, {"password", cfg.Password}} {
		if f.v == "" {
			return nil, fmt.Errorf("oduyo: %s is required", f.name)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = DefaultRenewBefore
	}
	if cfg.RenewBefore >= cfg.SessionTTL {
		return nil, fmt.Errorf("oduyo: renew_before (%s) must be shorter than the session ttl (%s)", cfg.RenewBefore, cfg.SessionTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient // a copy: the caller's client keeps its redirect policy
	} else {
		hc.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	// A redirected POST turns into a GET and loses the record.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c := &Client{
		cfg:  cfg,
		base: strings.TrimRight(u.String(), "/"),
		http: &hc,
		log:  log,
	}
	if u.Scheme == "http" && !privateHost(u.Hostname()) {
		log.Warn("oduyo base_url is plain http: credentials and records cross the network unencrypted", "base_url", c.base)
	}
	return c, nil
}

func privateHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsPrivate())
}

// String names the client without its secrets or session.
func (c *Client) String() string { return "oduyo.Client{" + c.base + "}" }

// UpdateKasa sends a kasa card update (POST /api/v1/erp/erp_kasa_fisi/update,
// body {"column": column}). column should come from NormalizeKasa. The
// error is a *Error, or a context error wrapped in one; see Classify.
func (c *Client) UpdateKasa(ctx context.Context, idempotencyKey string, column json.RawMessage) error {
	return c.send(ctx, "update kasa", KasaUpdatePath, idempotencyKey, column, true)
}

// CreateSpecialCode sends a special code (POST
// /api/v1/erp/erp_special_code/create, body {"column": column}). column
// should come from NormalizeSpecialCode.
func (c *Client) CreateSpecialCode(ctx context.Context, idempotencyKey string, column json.RawMessage) error {
	return c.send(ctx, "create special code", SpecialCodePath, idempotencyKey, column, false)
}

// Probe checks that the server at base_url is Ödüyo and answers: it
// makes sure of a session (logging in when there is none) and asks for
// one special code (POST …/erp_special_code/list, limit 1). Only an answer
// of Ödüyo counts — a JSON object whose "status" is a boolean, or a login
// refusal in JSON. A redirect, an HTML page (captive portal, proxy), a
// 5xx, 408 or 429, or a network error is an error: the server is not
// reachable as Ödüyo.
func (c *Client) Probe(ctx context.Context) error {
	sid, gen, err := c.ensureSession(ctx)
	if err != nil {
		var oe *Error
		if errors.As(err, &oe) && oe.Class == Auth && !oe.Foreign {
			// Ödüyo answered and refused the credentials: it is there.
			return nil
		}
		return &Error{Op: "probe", Class: Transient, Msg: "login", Err: err}
	}
	status, hdr, body, err := c.post(ctx, SpecialCodeListPath, sid, "", probeListBody)
	if err != nil {
		return &Error{Op: "probe", Class: Transient, Msg: "unreachable", Err: err}
	}
	if retryable(status) {
		return c.answerError("probe", Transient, status, hdr, body)
	}
	if status >= 300 && status < 400 {
		return c.redirectError("probe", status, hdr)
	}
	obj, kind := decodeAnswer(body)
	if _, ok := boolStatus(obj); !ok {
		return foreignError("probe", status, obj, kind)
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		c.invalidate(gen) // the next record call logs in again
	}
	return nil
}

// probeListBody asks for at most one special code.
var probeListBody = []byte(`{"filters":"","params":"","limit":"1","offset":"0"}`)

// Login makes sure the client holds a session that is not due for
// renewal, logging in if needed. Concurrent callers (and the record calls)
// share one login. A refusal is an Auth *Error; an unreachable server is
// Transient.
func (c *Client) Login(ctx context.Context) error {
	_, _, err := c.ensureSession(ctx)
	return err
}

// ensureSession returns a usable session id and its generation.
func (c *Client) ensureSession(ctx context.Context) (string, uint64, error) {
	for {
		c.mu.Lock()
		if c.session != "" && c.cfg.Now().Before(c.expires.Add(-c.cfg.RenewBefore)) {
			sid, gen := c.session, c.gen
			c.mu.Unlock()
			return sid, gen, nil
		}
		if call := c.inflight; call != nil {
			c.waiting++
			c.mu.Unlock()
			var err error
			select {
			case <-call.done:
			case <-ctx.Done():
				err = &Error{Op: "login", Class: Transient, Msg: "waiting for login", Err: ctx.Err()}
			}
			c.mu.Lock()
			c.waiting--
			c.mu.Unlock()
			if err != nil {
				return "", 0, err
			}
			if call.abandoned {
				continue // the caller that logged in gave up; try again ourselves
			}
			return call.sid, call.gen, call.err
		}
		call := &loginCall{done: make(chan struct{})}
		c.inflight = call
		renewal := c.session != ""
		c.mu.Unlock()

		start := c.cfg.Now()
		sid, err := c.login(ctx)

		c.mu.Lock()
		if err == nil {
			c.gen++
			c.session, c.expires = sid, start.Add(c.cfg.SessionTTL)
			call.sid, call.gen = sid, c.gen
			c.log.Info("logged in to oduyo", "renewal", renewal, "expires_at", c.expires)
		}
		call.err = err
		call.abandoned = err != nil && ctx.Err() != nil
		c.inflight = nil
		close(call.done)
		c.mu.Unlock()
		return call.sid, call.gen, err
	}
}

// SessionExpiry returns when the current session runs out, or the zero
// time when the client holds none (for status output).
func (c *Client) SessionExpiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == "" {
		return time.Time{}
	}
	return c.expires
}

// invalidate drops the session of generation gen, unless a newer login
// already replaced it.
func (c *Client) invalidate(gen uint64) {
	c.mu.Lock()
	if c.gen == gen {
		c.session = ""
	}
	c.mu.Unlock()
}

// login performs one login request.
func (c *Client) login(ctx context.Context) (string, error) {
	form := url.Values{
		"username":      {c.cfg.Username},
		"oduyo_api_key": {c.cfg.APIKey},
		"password":      {c.cfg.Password},
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+LoginPath, strings.NewReader(form.Encode()))
	if err != nil {
		return "", &Error{Op: "login", Class: Permanent, Msg: "build request", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Apikey", c.cfg.APIKey)
	status, hdr, body, err := c.do(req)
	if err != nil {
		return "", &Error{Op: "login", Class: Transient, Msg: "request failed", Err: err}
	}
	switch {
	case status >= 200 && status < 300:
		sid, perr := parseLogin(body)
		if perr != nil {
			perr.StatusCode = status
			perr.Msg = cutMessage(c.redact(perr.Msg))
			return "", perr
		}
		return sid, nil
	case retryable(status):
		return "", c.answerError("login", Transient, status, hdr, body)
	case status >= 300 && status < 400:
		return "", c.redirectError("login", status, hdr)
	}
	// The login answer is undocumented: any JSON object counts as the
	// server's own refusal. Anything else (an HTML page, a bare text) came
	// from something in between and says nothing about the credentials.
	if obj, kind := decodeAnswer(body); obj == nil {
		return "", foreignError("login", status, nil, kind)
	}
	if status == http.StatusNotFound {
		e := c.answerError("login", Auth, status, hdr, body)
		e.Msg = "login endpoint not found; check base_url: " + e.Msg
		return "", e
	}
	e := c.answerError("login", Auth, status, hdr, body)
	e.Msg = "credentials refused (check oduyo.username, oduyo.password and oduyo.api_key): " + e.Msg
	return "", e
}

// send posts one record, logging in (again) as needed. replayable: the
// HTTP transport may send the request again by itself when a reused
// connection breaks after it was written (it does so for requests with an
// Idempotency-Key). That is harmless for a kasa update (the full card
// state) and a duplicate for a special code create, so creates are never
// replayed: their outcome is left unknown and the record is looked up.
func (c *Client) send(ctx context.Context, op, path, key string, column json.RawMessage, replayable bool) error {
	column = bytes.TrimSpace(column)
	if !json.Valid(column) || column[0] != '{' {
		return &Error{Op: op, Class: Permanent, Msg: "column is not a json object"}
	}
	// Built by hand: json.Marshal would HTML-escape the column's text.
	body := make([]byte, 0, len(column)+12)
	body = append(append(append(body, `{"column":`...), column...), '}')
	for attempt := 0; ; attempt++ {
		sid, gen, err := c.ensureSession(ctx)
		if err != nil {
			return err
		}
		status, hdr, resp, err := c.postOnce(ctx, path, sid, key, body, replayable)
		if err != nil {
			return &Error{Op: op, Class: Transient, Msg: "request failed", Err: err}
		}
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			if attempt == 0 {
				c.invalidate(gen)
				// The client is the one owner of the re-login: once per
				// call, never again by its callers.
				c.log.Info("oduyo session rejected, logging in again", "op", op, "status", status)
				continue
			}
			obj, kind := decodeAnswer(resp)
			if _, ok := boolStatus(obj); !ok {
				return foreignError(op, status, obj, kind)
			}
			e := c.answerError(op, Auth, status, hdr, resp)
			e.Msg = "refused again right after a fresh login: the credentials (oduyo.username, oduyo.password, oduyo.api_key) are not allowed to do this: " + e.Msg
			return e
		}
		return c.verdict(op, status, hdr, resp)
	}
}

func (c *Client) post(ctx context.Context, path, sid, key string, body []byte) (int, http.Header, []byte, error) {
	return c.postOnce(ctx, path, sid, key, body, true)
}

func (c *Client) postOnce(ctx context.Context, path, sid, key string, body []byte, replayable bool) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if !replayable {
		// Without GetBody the transport cannot send the body again.
		req.GetBody = nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Apikey", c.cfg.APIKey)
	req.Header.Set("Authorization", sid)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return c.do(req)
}

// do sends req and reads a bounded body, all within req's context.
func (c *Client) do(req *http.Request) (int, http.Header, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read answer: %w", err)
	}
	return resp.StatusCode, resp.Header, body, nil
}

func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// verdict turns an answer to a record call into nil or a classified error.
// Only Ödüyo can accept or reject a record: success is 200, 201 or 202
// with a JSON object whose "status" is the boolean true; a rejection is
// such an object with false (any status), or a 4xx with such an object.
// Anything else — a redirect, an HTML page, a 4xx without that JSON, a
// status that is not a boolean ("true", 1) — is not Ödüyo's answer: the
// record waits (Transient, Foreign).
func (c *Client) verdict(op string, status int, hdr http.Header, body []byte) error {
	if retryable(status) {
		return c.answerError(op, Transient, status, hdr, body)
	}
	if status >= 300 && status < 400 {
		return c.redirectError(op, status, hdr)
	}
	obj, kind := decodeAnswer(body)
	st, ok := boolStatus(obj)
	switch {
	case !ok:
		return foreignError(op, status, obj, kind)
	case st && (status == http.StatusOK || status == http.StatusCreated || status == http.StatusAccepted):
		if m := serverMessage(obj); m != "" {
			c.log.Debug("oduyo accepted", "op", op, "message", cutMessage(c.redact(m)))
		}
		return nil
	case !st || (status >= 400 && status < 500):
		return c.answerError(op, Permanent, status, hdr, body)
	}
	// "status": true with an unexpected code (203, 206, 1xx …).
	return foreignError(op, status, obj, "json with status true and an unexpected http status")
}

// redirectError: a redirect is never followed (a redirected POST loses its
// body) and is not Ödüyo's answer (captive portals and proxies redirect).
func (c *Client) redirectError(op string, status int, hdr http.Header) *Error {
	return &Error{Op: op, Class: Transient, Foreign: true, StatusCode: status,
		Msg: "redirected to " + c.redact(hdr.Get("Location")) + ": not an answer of Ödüyo (captive portal or proxy? check base_url if it persists)"}
}

// foreignError: an answer that did not come from Ödüyo, or not in its
// format. It says nothing about the record.
func foreignError(op string, status int, obj map[string]json.RawMessage, kind string) *Error {
	if obj != nil && kind == "" {
		if _, present := obj["status"]; present {
			kind = `json whose "status" is not a boolean`
		} else {
			kind = `json without a "status"`
		}
	}
	return &Error{Op: op, Class: Transient, Foreign: true, StatusCode: status,
		Msg: "not an answer of Ödüyo (" + kind + ")"}
}

// answerError describes a failed answer: the server's message when it
// sent JSON, else what kind of body came, plus Retry-After.
func (c *Client) answerError(op string, class Class, status int, hdr http.Header, body []byte) *Error {
	e := &Error{Op: op, Class: class, StatusCode: status}
	if hdr != nil {
		if d, ok := ParseRetryAfter(hdr.Get("Retry-After"), c.cfg.Now()); ok {
			e.RetryAfter = d
		}
	}
	obj, kind := decodeAnswer(body)
	switch {
	case obj == nil:
		e.Msg = kind
	default:
		e.Msg = serverMessage(obj)
		if st, ok := jsonStatus(obj); ok && !st {
			switch {
			case e.Msg == "":
				e.Msg = `"status": false`
			case status == http.StatusOK:
				e.Msg = `"status": false: ` + e.Msg
			}
		}
		if e.Msg == "" {
			e.Msg = strings.ToLower(http.StatusText(status))
		}
	}
	e.Msg = cutMessage(c.redact(e.Msg))
	return e
}

// decodeAnswer returns the JSON object of an answer, or nil and what the
// body looked like.
func decodeAnswer(body []byte) (map[string]json.RawMessage, string) {
	b := utf8Text(bytes.TrimSpace(bytes.TrimPrefix(body, utf8BOM)))
	if len(b) == 0 {
		return nil, "empty answer"
	}
	if b[0] == '<' {
		return nil, "html page (proxy or error page?)"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return nil, "malformed json"
	}
	return obj, ""
}

// redact removes anything secret from text that came from the server.
func (c *Client) redact(s string) string {
	c.mu.Lock()
	sid := c.session
	c.mu.Unlock()
	for _, secret := range []string{c.cfg.Password, c.cfg.APIKey, sid} {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
