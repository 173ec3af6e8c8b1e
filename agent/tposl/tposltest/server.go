// Package tposltest is a fake TPOSL licence server on loopback for tests
// and the demo: it records every registration, answers with any
// ITPOSReturn, and can be told to fail the way real servers and networks
// do (down, reset, 5xx, proxy HTML, malformed JSON, slow, XML).
//
// It speaks real HTTP on 127.0.0.1 with a port chosen by the kernel. Going
// down closes the listener (connections are refused) and coming back
// listens on the same address again, so a client keeps its URL across an
// outage. All methods are safe for concurrent use.
package tposltest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
)

// Path is the endpoint path the server answers on.
const Path = "/TPOSL"

// Mode is a kind of fault.
type Mode int

// The fault modes.
const (
	None          Mode = iota // answer normally
	Down                      // listener closed: connection refused
	Reset                     // accept, read the request, then reset the connection
	Status                    // answer with Fault.Code (default 500) and a short body
	HTMLPage                  // 200 with a proxy's HTML login page
	MalformedJSON             // 200, application/json, a truncated object
	NotJSON                   // 200, text/plain "OK"
	Slow                      // wait Fault.Delay (or until the client gives up), then answer
	XML                       // answer the ITPOSReturn as XML (application/xml)
)

func (m Mode) String() string {
	switch m {
	case None:
		return "none"
	case Down:
		return "down"
	case Reset:
		return "reset"
	case Status:
		return "status"
	case HTMLPage:
		return "html"
	case MalformedJSON:
		return "malformed-json"
	case NotJSON:
		return "not-json"
	case Slow:
		return "slow"
	case XML:
		return "xml"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// Fault says how the server misbehaves.
type Fault struct {
	Mode       Mode
	Code       int           // Status: the HTTP status (500, 502, 503, …)
	RetryAfter string        // Status: a Retry-After header value, if set
	Delay      time.Duration // Slow: how long to wait before answering
}

// StatusFault answers every call with code.
func StatusFault(code int) Fault { return Fault{Mode: Status, Code: code} }

// SlowFault answers after d.
func SlowFault(d time.Duration) Fault { return Fault{Mode: Slow, Delay: d} }

// Server is the fake licence server.
type Server struct {
	srv  *http.Server
	addr string

	mu       sync.Mutex
	ln       net.Listener // nil while down
	conns    map[net.Conn]struct{}
	fault    Fault
	ret      *tposl.Return // nil: DefaultReturn echoing the fiscal serial
	answerFn func(tposl.Params) tposl.Return
	user     string
	pass     string
	checkCrd bool
	reqs     []tposl.Params
	calls    int
	closed   bool
	done     chan struct{}
}

// DefaultReturn is the answer before SetReturn: a registered, active,
// fully licensed till with an active GMP3 module until exp. The server
// fills OnayFiscalSeriNo with the serial of each request.
func DefaultReturn(exp time.Time) tposl.Return {
	return tposl.Return{
		Status: true, Id: 1, BayiKodu: "B0001", ProgramKodu: "TPOS",
		GMP3Status: 1, GMP3ExpDate: exp.Format("2006-01-02"),
		LisansModul: "TPOS Perakende", LisansStatus: 1, Aktif: 1,
	}
}

// NewServer starts a server on 127.0.0.1:0. It panics if it cannot
// listen, like httptest.NewServer.
func NewServer() *Server {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("tposltest: listen: %v", err))
	}
	s := &Server{
		addr:  ln.Addr().String(),
		conns: map[net.Conn]struct{}{},
		done:  make(chan struct{}),
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState:         s.connState,
		ErrorLog:          nil,
	}
	s.serve(ln)
	return s
}

func (s *Server) serve(ln net.Listener) {
	s.ln = ln
	go func() { _ = s.srv.Serve(ln) }()
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(s.conns, c)
	}
}

// URL is the full endpoint URL, http://127.0.0.1:PORT/TPOSL.
func (s *Server) URL() string { return "http://" + s.addr + Path }

// Addr is host:port.
func (s *Server) Addr() string { return s.addr }

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	_ = s.srv.Close()
}

// SetReturn makes every later registration answer r exactly.
func (s *Server) SetReturn(r tposl.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ret = &r
}

// SetAnswerFunc makes the server answer each registration with f(params)
// (called without locks held; it must be safe for concurrent use). It
// takes precedence over SetReturn; nil removes it.
func (s *Server) SetAnswerFunc(f func(tposl.Params) tposl.Return) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answerFn = f
}

// ClearRequests forgets the recorded requests and calls.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs, s.calls = nil, 0
}

// SetCredentials makes the server check WebErisimKullanici and
// WebErisimSifre; a wrong pair is answered with Status false,
// ErrorMessageCode 401 and a Turkish message.
func (s *Server) SetCredentials(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.pass, s.checkCrd = user, pass, true
}

// SetFault switches the fault mode; Fault{} (None) heals. Going Down
// closes the listener and every open connection; leaving Down listens on
// the same address again. It returns an error only if that address
// cannot be taken back.
func (s *Server) SetFault(f Fault) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("tposltest: server closed")
	}
	wasDown := s.fault.Mode == Down
	s.fault = f
	switch {
	case f.Mode == Down && !wasDown:
		if s.ln != nil {
			_ = s.ln.Close()
			s.ln = nil
		}
		for c := range s.conns {
			_ = c.Close()
			delete(s.conns, c)
		}
	case f.Mode != Down && wasDown:
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			s.fault = Fault{Mode: Down}
			return fmt.Errorf("tposltest: listen again on %s: %w", s.addr, err)
		}
		s.serve(ln)
	}
	return nil
}

// Fault is the current fault.
func (s *Server) Fault() Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fault
}

// Requests are the decoded registrations that reached the server, in
// order (also those answered with a fault after decoding).
func (s *Server) Requests() []tposl.Params {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tposl.Params(nil), s.reqs...)
}

// Calls counts every HTTP request that reached the handler.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// ServeHTTP implements the endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls++
	fault := s.fault
	s.mu.Unlock()

	// Requests to the endpoint are read and recorded before any fault.
	endpoint := r.URL.Path == Path && r.Method == http.MethodPost
	var (
		p    tposl.Params
		perr error
	)
	if endpoint {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return
		}
		if p, perr = decodeParams(r.Header.Get("Content-Type"), body); perr == nil {
			s.mu.Lock()
			s.reqs = append(s.reqs, p)
			s.mu.Unlock()
		}
	}

	// Faults of the network and of proxies hit every request.
	switch fault.Mode {
	case Reset:
		reset(w)
		return
	case Status:
		code := fault.Code
		if code == 0 {
			code = http.StatusInternalServerError
		}
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"Message":"An error has occurred (fake %d)."}`, code)
		return
	case HTMLPage:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, proxyPage)
		return
	case Slow:
		t := time.NewTimer(fault.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			panic(http.ErrAbortHandler) // the client gave up
		case <-s.done:
			panic(http.ErrAbortHandler) // closing: no answer at all
		}
	}

	if r.URL.Path != Path {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"Message":"No HTTP resource was found that matches the request URI."}`)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = io.WriteString(w, `{"Message":"The requested resource does not support this http method."}`)
		return
	}

	// Faults of the server's answer.
	switch fault.Mode {
	case MalformedJSON:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `{"Status":true,"ErrorMessageCode":0,"ErrorMessage":"`)
		return
	case NotJSON:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "OK")
		return
	}

	if perr != nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		msg, _ := json.Marshal(map[string]string{"Message": "The request is invalid.", "MessageDetail": perr.Error()})
		_, _ = w.Write(msg)
		return
	}
	ret := s.answer(p)
	if fault.Mode == XML || wantsXML(r) {
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		b, _ := xml.Marshal(ret)
		_, _ = w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	b, _ := json.Marshal(ret)
	_, _ = w.Write(b)
}

func (s *Server) answer(p tposl.Params) tposl.Return {
	s.mu.Lock()
	badCreds := s.checkCrd && (p.WebErisimKullanici != s.user || p.WebErisimSifre != s.pass)
	f, ret := s.answerFn, s.ret
	s.mu.Unlock()
	switch {
	case badCreds:
		return tposl.Return{Status: false, ErrorMessageCode: 401, ErrorMessage: "Web erişim kullanıcı adı veya şifresi hatalı."}
	case f != nil:
		return f(p)
	case ret != nil:
		return *ret
	}
	r := DefaultReturn(time.Now().AddDate(1, 0, 0))
	r.OnayFiscalSeriNo = p.YKFiscalSeriNo
	return r
}

// wantsXML: the client asked for XML only (as an XML-speaking client would).
func wantsXML(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return a != "" && strings.Contains(a, "xml") && !strings.Contains(a, "json")
}

// decodeParams reads the body strictly: unknown fields, strings where the
// spec has integers, and values over the spec's limits are errors, as
// ASP.NET model validation would make them.
func decodeParams(contentType string, body []byte) (tposl.Params, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	var p tposl.Params
	switch mt {
	case "application/json", "text/json":
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return tposl.Params{}, fmt.Errorf("json: %w", err)
		}
	case "application/xml", "text/xml":
		if err := xml.Unmarshal(body, &p); err != nil {
			return tposl.Params{}, fmt.Errorf("xml: %w", err)
		}
	default:
		return tposl.Params{}, fmt.Errorf("unsupported media type %q", mt)
	}
	if err := p.Validate(); err != nil {
		return tposl.Params{}, err
	}
	return p, nil
}

// reset closes the connection with a TCP RST.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	c, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

const proxyPage = `<!DOCTYPE html>
<html><head><title>Erişim Engellendi - Web Proxy</title></head>
<body><h1>Erişim engellendi</h1><p>Bu siteye erişim için oturum açmanız gerekiyor.</p></body></html>
`
