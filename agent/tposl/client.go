package tposl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// DefaultTimeout bounds one registration call when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// maxBody is the most of an answer that is read; an ITPOSReturn is tiny.
const maxBody = 1 << 20

// Config configures a Client.
type Config struct {
	URL        string        // full endpoint URL, e.g. https://host/TPOSL
	HTTPClient *http.Client  // nil: a client with the default transport (proxy from environment)
	Timeout    time.Duration // per call; 0: DefaultTimeout
	Logger     *slog.Logger  // nil: discard
	UserAgent  string        // "": "tposagent"
	// AllowPlainHTTP accepts http:// to a public host (with a warning);
	// without it New refuses such a URL.
	AllowPlainHTTP bool
}

// Client registers the till with the TPOSL licence server. It is safe for
// concurrent use.
type Client struct {
	url     string
	host    string
	hc      *http.Client
	timeout time.Duration
	log     *slog.Logger
	ua      string
}

// ErrConfig is wrapped by New for an unusable configuration.
var ErrConfig = errors.New("invalid tposl client config")

// New checks the configuration and returns a client. As docs/protocols.md says,
// plain http:// is accepted for loopback (silently) and for a private
// network (10/8, 172.16/12, 192.168/16, link-local, fc00::/7, or a single
// label or .local/.lan/.internal/.home.arpa name) with a warning in the log,
// since the password crosses that network in the clear; to any other host
// only with AllowPlainHTTP (and a warning). A redirect is followed only
// by a GET (Ping) and only within the origin (scheme, host and port) of the
// URL; a registration (POST: its body carries the password) follows none,
// so its body and credentials never leave for another host (see
// sameOriginGET). Certificates are always checked unless the caller's
// HTTPClient says otherwise.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(cfg.URL))
	if err != nil {
		return nil, fmt.Errorf("new tposl client: parse url: %w", ErrConfig)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("new tposl client: url scheme %q, want https or http: %w", u.Scheme, ErrConfig)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("new tposl client: url has no host: %w", ErrConfig)
	}
	c := &Client{
		url:     u.String(),
		host:    u.Host,
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		ua:      cfg.UserAgent,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.ua == "" {
		c.ua = "tposagent"
	}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient // a copy: the caller's client keeps its policy
		hc.CheckRedirect = sameOriginGET(cfg.HTTPClient.CheckRedirect)
		c.hc = &hc
	} else {
		c.hc = &http.Client{
			Transport:     http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: sameOriginGET(nil),
		}
	}
	if u.Scheme == "http" {
		switch hostScope(u.Hostname()) {
		case scopeLoopback:
		case scopePrivate:
			c.log.Warn("tposl url is plain http; the web access password crosses the local network in the clear", "host", u.Host)
		default:
			if !cfg.AllowPlainHTTP {
				return nil, fmt.Errorf("new tposl client: plain http to public host %s would send the password in the clear; use https: %w", u.Hostname(), ErrConfig)
			}
			c.log.Warn("tposl url is plain http to a public host; the web access password crosses the internet in the clear", "host", u.Host)
		}
	}
	return c, nil
}

// maxRedirects is the most redirects a GET follows.
const maxRedirects = 5

// sameOriginGET is the redirect policy: only a GET is redirected, at most
// maxRedirects times, and only to the same scheme, host and port as the
// first request. A POST is never redirected: a 307/308 would send the
// registration (WebErisimSifre in it) again, a 301/302/303 would turn it
// into a GET that says nothing about it. A refused redirect hands the 3xx
// answer back, which the caller reports with its Location. then, when
// set, is the caller's own policy, asked after this one allows.
func sameOriginGET(then func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		first := via[0]
		if first.Method != http.MethodGet || req.Method != http.MethodGet || len(via) > maxRedirects || !sameOrigin(first.URL, req.URL) {
			return http.ErrUseLastResponse
		}
		if then != nil {
			return then(req, via)
		}
		return nil
	}
}

// sameOrigin compares scheme, host and port (the default port filled in).
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// redirectDetail names where a refused redirect pointed (without its query
// or user info, which may carry secrets, and cleaned of control
// characters), and what to do.
func redirectDetail(loc string, base *url.URL) string {
	where := "another place"
	if u, err := url.Parse(strings.TrimSpace(loc)); err == nil {
		if base != nil {
			u = base.ResolveReference(u)
		}
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		where = clean(u.String(), 200)
	} else if c := clean(loc, 80); c != "" {
		where = strconv.Quote(c)
	}
	return "redirect to " + where + " not followed: the licence server must answer at tposl.url itself (correct tposl.url if the server moved)"
}

type scope int

const (
	scopePublic scope = iota
	scopePrivate
	scopeLoopback
)

func hostScope(h string) scope {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return scopeLoopback
	}
	if ip := net.ParseIP(h); ip != nil {
		switch {
		case ip.IsLoopback():
			return scopeLoopback
		case ip.IsPrivate() || ip.IsLinkLocalUnicast():
			return scopePrivate
		}
		return scopePublic
	}
	if !strings.Contains(h, ".") {
		return scopePrivate
	}
	for _, suf := range []string{".local", ".lan", ".internal", ".home.arpa", ".intranet", ".corp"} {
		if strings.HasSuffix(h, suf) {
			return scopePrivate
		}
	}
	return scopePublic
}

// URL is the endpoint the client posts to.
func (c *Client) URL() string { return c.url }

// Ping checks that the server can be reached without registering: a GET
// of the endpoint, where any HTTP answer (the server says 405) counts,
// except an HTML page with status 2xx, which is a proxy or captive portal
// (kind HTML). Failures are an *Error; for doctor and reconnect probes.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return &Error{Op: "ping", Kind: Network, Err: err}
	}
	req.Header.Set("User-Agent", c.ua)
	resp, err := c.hc.Do(req)
	if err != nil {
		return &Error{Op: "ping", Kind: Network, Err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
		// Not followed: to another origin (a captive portal's login page,
		// typically), or one too many.
		return &Error{Op: "ping", Kind: HTTPStatus, StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
			Detail: redirectDetail(loc, resp.Request.URL)}
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	b := trimBody(raw)
	if resp.StatusCode/100 == 2 && (strings.Contains(mt, "html") || looksHTML(b)) {
		return &Error{Op: "ping", Kind: HTML, StatusCode: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Detail: htmlDetail(b)}
	}
	return nil
}

// Kind classifies a failed call.
type Kind string

// The kinds of Error.
const (
	Network    Kind = "network"     // no answer: refused, reset, DNS, TLS, timeout, cancelled
	HTTPStatus Kind = "http_status" // an answer with a status other than 2xx
	NotJSON    Kind = "not_json"    // 2xx, but the body is neither JSON nor XML (or empty)
	HTML       Kind = "html"        // 2xx, but an HTML page: a proxy or captive portal
	Decode     Kind = "decode"      // 2xx JSON/XML that is malformed or not an ITPOSReturn
)

// Error is a failed Register call. Its text is one line that names the
// operation and never contains the web access password.
type Error struct {
	Op          string // "register" or "ping"; "" reads as "register"
	Kind        Kind
	StatusCode  int           // HTTP status, 0 if none
	ContentType string        // of the answer, if any
	RetryAfter  time.Duration // from a Retry-After header, 0 if none
	Detail      string        // short, secret-free: server message, page title or body snippet
	Err         error         // the cause, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	op := e.Op
	if op == "" {
		op = "register"
	}
	b.WriteString("tposl " + op + ": ")
	switch e.Kind {
	case Network:
		b.WriteString("network error")
	case HTTPStatus:
		fmt.Fprintf(&b, "http status %d", e.StatusCode)
		if t := http.StatusText(e.StatusCode); t != "" {
			b.WriteString(" " + t)
		}
	case NotJSON:
		fmt.Fprintf(&b, "answer is not json (content type %q)", e.ContentType)
	case HTML:
		b.WriteString("answer is an html page (a proxy or captive portal?)")
	case Decode:
		b.WriteString("cannot decode the answer")
	default:
		b.WriteString(string(e.Kind))
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying again later may help: network errors,
// 408, 429, 5xx and HTML pages of proxies.
func (e *Error) Temporary() bool {
	switch e.Kind {
	case Network, HTML:
		return true
	case HTTPStatus:
		return e.StatusCode == 408 || e.StatusCode == 429 || e.StatusCode >= 500
	}
	return false
}

// Register posts the params and returns the server's answer. A decoded
// answer is returned with a nil error even when its Status is false; the
// licence state is for Evaluate to say. Params over a limit of the spec are
// not sent (a *FieldError). Any other failure is an *Error; the caller's
// context cancellation is an *Error of kind Network wrapping ctx.Err().
func (c *Client) Register(ctx context.Context, p Params) (Return, error) {
	sc := scrubber{p.WebErisimSifre}
	if err := p.Validate(); err != nil {
		return Return{}, fmt.Errorf("tposl register: %w", err)
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return Return{}, fmt.Errorf("tposl register: encode params: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, &body)
	if err != nil {
		return Return{}, sc.error(&Error{Kind: Network, Err: err})
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json, text/json, application/xml;q=0.9, text/xml;q=0.9")
	req.Header.Set("User-Agent", c.ua)

	start := time.Now()
	c.log.Debug("tposl register", "host", c.host, "params", p)
	resp, err := c.hc.Do(req)
	if err != nil {
		e := sc.error(&Error{Kind: Network, Err: err})
		c.log.Debug("tposl register failed", "host", c.host, "kind", Network, "err", e, "elapsed", time.Since(start))
		return Return{}, e
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		e := sc.error(&Error{Kind: Network, StatusCode: resp.StatusCode, Err: fmt.Errorf("read answer: %w", err)})
		c.log.Debug("tposl register failed", "host", c.host, "kind", Network, "err", e)
		return Return{}, e
	}
	r, cerr := classify(resp, raw, sc)
	if cerr != nil {
		e := sc.error(cerr)
		c.log.Debug("tposl register failed", "host", c.host, "kind", cerr.Kind, "status", resp.StatusCode, "err", e, "elapsed", time.Since(start))
		return Return{}, e
	}
	c.log.Debug("tposl register answered", "host", c.host, "status", r.Status, "aktif", r.Aktif,
		"lisans_status", r.LisansStatus, "error_code", r.ErrorMessageCode, "elapsed", time.Since(start))
	return r, nil
}

// classify turns an HTTP answer into a Return or an *Error.
// Details quoted from the body are taken after the secret was scrubbed
// from it, so that no shortened piece of it survives.
func classify(resp *http.Response, raw []byte, sc scrubber) (Return, *Error) {
	ct := resp.Header.Get("Content-Type")
	mt, _, _ := mime.ParseMediaType(ct)
	b := trimBody(toUTF8(raw, ct))
	html := strings.Contains(mt, "html") || looksHTML(b)
	safe := []byte(sc.clean(string(b)))

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{Kind: HTTPStatus, StatusCode: resp.StatusCode, ContentType: ct,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
		switch {
		case html:
			e.Detail = htmlDetail(safe)
		case len(b) > 0 && b[0] == '{':
			e.Detail = serverMessage(safe)
		default:
			e.Detail = snippet(safe)
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			var base *url.URL
			if resp.Request != nil {
				base = resp.Request.URL
			}
			e.Detail = redirectDetail(sc.clean(loc), base)
		}
		return Return{}, e
	}
	if len(raw) > maxBody {
		return Return{}, &Error{Kind: Decode, StatusCode: resp.StatusCode, ContentType: ct, Detail: "answer larger than 1 MiB"}
	}
	if html {
		return Return{}, &Error{Kind: HTML, StatusCode: resp.StatusCode, ContentType: ct, Detail: htmlDetail(safe)}
	}
	if len(b) == 0 {
		return Return{}, &Error{Kind: NotJSON, StatusCode: resp.StatusCode, ContentType: ct, Detail: "empty body"}
	}
	switch b[0] {
	case '{', '"', '<':
	case '[':
		return Return{}, &Error{Kind: Decode, StatusCode: resp.StatusCode, ContentType: ct, Detail: "a json array, not an ITPOSReturn object"}
	default:
		return Return{}, &Error{Kind: NotJSON, StatusCode: resp.StatusCode, ContentType: ct, Detail: snippet(safe)}
	}
	r, err := DecodeReturn(b)
	if err != nil {
		return Return{}, &Error{Kind: Decode, StatusCode: resp.StatusCode, ContentType: ct, Err: err}
	}
	return r, nil
}

func looksHTML(b []byte) bool {
	head := b
	if len(head) > 512 {
		head = head[:512]
	}
	h := strings.ToLower(string(head))
	return strings.HasPrefix(h, "<!doctype html") || strings.Contains(h, "<html") ||
		strings.Contains(h, "<head") || strings.Contains(h, "<body")
}

var titleRE = regexp.MustCompile(`(?is)<title[^>]*>(.*?)</title>`)

func htmlDetail(b []byte) string {
	if len(b) > 64<<10 {
		b = b[:64<<10]
	}
	if m := titleRE.FindSubmatch(b); m != nil {
		if t := clean(string(m[1]), 80); t != "" {
			return "page title " + strconv.Quote(t)
		}
	}
	return "html page"
}

// serverMessage takes "Message" (ASP.NET's error shape) or "ErrorMessage"
// from a JSON error body.
func serverMessage(b []byte) string {
	var m struct {
		Message      string `json:"Message"`
		ErrorMessage string `json:"ErrorMessage"`
	}
	if json.Unmarshal(b, &m) == nil {
		if s := clean(first(m.Message, m.ErrorMessage), 160); s != "" {
			return "server says " + strconv.Quote(s)
		}
	}
	return snippet(b)
}

func snippet(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > 4096 {
		b = b[:4096]
	}
	s := clean(string(b), 80)
	if s == "" {
		return fmt.Sprintf("%d bytes of binary data", len(b))
	}
	return "body " + strconv.Quote(s)
}

// clean keeps printable runes on one line, at most max of them.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if r == utf8.RuneError || (!unicode.IsPrint(r) && !unicode.IsSpace(r)) {
			continue
		}
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
			n++
		}
		if n >= max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// retryAfter reads seconds or an HTTP date; 0 if absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// minSecretLen is the shortest secret that is scrubbed from error text;
// shorter ones would garble every message and protect nothing.
const minSecretLen = 3

// scrubber removes secrets from error text.
type scrubber struct{ secret string }

func (s scrubber) clean(text string) string {
	if len(s.secret) < minSecretLen {
		return text
	}
	out := strings.ReplaceAll(text, s.secret, redacted)
	// The secret may appear escaped as JSON or URL text.
	if q, err := json.Marshal(s.secret); err == nil {
		if qs := string(q[1 : len(q)-1]); qs != s.secret {
			out = strings.ReplaceAll(out, qs, redacted)
		}
	}
	if qe := url.QueryEscape(s.secret); qe != s.secret {
		out = strings.ReplaceAll(out, qe, redacted)
	}
	if pe := url.PathEscape(s.secret); pe != s.secret {
		out = strings.ReplaceAll(out, pe, redacted)
	}
	return out
}

func (s scrubber) error(e *Error) *Error {
	e.Detail = s.clean(e.Detail)
	if e.Err != nil && len(s.secret) >= minSecretLen {
		e.Err = scrubbedError{err: e.Err, text: s.clean(e.Err.Error())}
	}
	return e
}

// scrubbedError shows its cause's text with the secret removed (it keeps
// the text, not the secret); errors.Is/As still reach the cause.
type scrubbedError struct {
	err  error
	text string
}

func (e scrubbedError) Error() string { return e.text }
func (e scrubbedError) Unwrap() error { return e.err }
