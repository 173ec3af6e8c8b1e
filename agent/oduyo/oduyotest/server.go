// Package oduyotest provides a fake Ödüyo ERP server on loopback for the
// tests of the client, the agent's end-to-end tests and the demo. It needs
// no *testing.T.
//
// The server speaks the wire format of docs/protocols.md: form login issuing
// session ids, kasa updates and special code creation with Apikey and
// Authorization headers. It records every delivered record in order and
// can be told to fail in the ways a real network and server fail: down
// (connection refused, back on the same address), error statuses with
// Retry-After, slowness, connection resets, HTML pages, redirects,
// malformed JSON, session expiry, "status": false for chosen records, a
// captive portal in front of every path (Intercept), and a record stored
// whose answer is then lost (Fault.Stored). It answers the special code
// and kasa card list calls with filters, ids ascending, so that a client
// can look a record up (IgnoreListFilters: a server that does not honour
// them), and can refuse kasa updates without an id (RequireKasaID).
//
// All methods are safe for concurrent use.
package oduyotest

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Paths served; the same as the client's.
const (
	LoginPath           = "/api/v1/ws/login"
	KasaUpdatePath      = "/api/v1/erp/erp_kasa_fisi/update"
	SpecialCodePath     = "/api/v1/erp/erp_special_code/create"
	SpecialCodeListPath = "/api/v1/erp/erp_special_code/list"
	KasaListPath        = "/api/v1/erp/erp_kasa_fisi/list"
)

// Record kinds in Delivery.Kind.
const (
	KindKasa        = "kasa"
	KindSpecialCode = "special_code"
)

// Default credentials the server accepts.
const (
	DefaultAPIKey   = "test-apikey-5f1c9a"
	DefaultUsername = "kasa01"
	DefaultPassword = "Gizli-Şifre-7731"
)

// LoginStyle chooses the shape of the login answer, since the real format
// is undocumented.
type LoginStyle int

const (
	LoginJSONData      LoginStyle = iota // {"status":true,"data":"<id>"}
	LoginJSONSessionID                   // {"status":true,"session_id":"<id>"}
	LoginJSONUpper                       // {"SESSION_ID":"<id>"}
	LoginJSONToken                       // {"status":true,"token":"<id>"}
	LoginJSONNested                      // {"status":true,"data":{"SESSION_ID":"<id>","user":"…"}}
	LoginBareToken                       // <id> as text/plain
)

// Fault is one scripted misbehaviour. The zero Fault answers normally.
type Fault struct {
	Status     int           // answer with this status instead of processing (0: process normally)
	RetryAfter string        // Retry-After header value to send, e.g. "2" or an HTTP date
	Delay      time.Duration // wait this long first (a slow server); cut short when the client gives up
	Reset      bool          // drop the connection with a TCP reset, no answer
	HTML       bool          // answer with an HTML error page (status 200 unless Status is set)
	Malformed  bool          // answer with broken JSON (status 200 unless Status is set)
	Body       string        // answer with this body as JSON (status 200 unless Status is set)
	Redirect   string        // answer with this Location (status 302 unless Status is set)
	// Stored: process the request first (the record is stored and shows
	// in Delivered and in the list), then misbehave as above instead of
	// answering: the client cannot know the outcome.
	Stored bool
	// Only: apply the fault to this kind of record (KindKasa,
	// KindSpecialCode) only; requests of the other kind pass it by.
	Only string
}

// Delivery is one record the server accepted.
type Delivery struct {
	Seq            int             // 1, 2, … in order of acceptance
	Kind           string          // KindKasa or KindSpecialCode
	Column         json.RawMessage // the column object as received
	ID             string          // the column's id, if any (kasa)
	IntegrationID  string          // the column's integration_id, if any
	IdempotencyKey string          // the Idempotency-Key header
	At             time.Time       // when it was accepted (server clock)
	Duplicate      bool            // an earlier delivery had the same non-empty idempotency key
}

// Option configures NewServer.
type Option func(*Server)

// WithCredentials sets the API key, user name and password accepted.
func WithCredentials(apiKey, username, password string) Option {
	return func(s *Server) { s.APIKey, s.Username, s.Password = apiKey, username, password }
}

// WithLoginStyle sets the shape of login answers.
func WithLoginStyle(st LoginStyle) Option { return func(s *Server) { s.style = st } }

// WithClock sets the clock used for Delivery.At.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// ListRow is one special code as the list call returns it (ids as strings,
// as in the public docs).
type ListRow struct {
	ID            string `json:"id"`
	IntegrationID string `json:"integration_id"`
	Code          string `json:"code"`
	Status        string `json:"status"`
	CreatedIn     string `json:"created_in"`
}

// KasaRow is one kasa card as the kasa list call returns it.
type KasaRow struct {
	ID            string `json:"id"`
	IntegrationID string `json:"integration_id"`
	Status        string `json:"status"`
}

// Server is a fake Ödüyo server on 127.0.0.1 with a port chosen by the OS.
type Server struct {
	// Credentials accepted. Set them with options or SetCredentials;
	// writing the fields while requests run is a data race.
	APIKey, Username, Password string

	addr string
	now  func() time.Time

	connMu sync.Mutex
	conns  map[net.Conn]bool // open connections, reset when going down

	mu          sync.Mutex
	srv         *http.Server
	serving     sync.WaitGroup
	down        bool
	closed      bool
	style       LoginStyle
	sessions    map[string]*session
	issued      []string
	expireAfter int
	loginFaults []Fault
	faults      []Fault
	listFaults  []Fault
	always      *Fault
	intercept   *Fault
	ignoreFilt  bool
	reject      map[string]bool
	delivered   []Delivery
	codes       []ListRow        // special codes delivered, in order (the list call's table)
	codesByInt  map[string][]int // integration_id -> indexes into codes
	cards       []KasaRow        // kasa cards known (the kasa list call's table), by first sight
	cardIndex   map[string]int   // id -> index into cards
	cardsByInt  map[string][]int // integration_id -> indexes into cards
	needKasaID  bool
	seenKeys    map[string]bool
	logins      int
	requests    int
	lists       int
	probes      int
}

type session struct {
	calls int
	valid bool
}

// NewServer starts a server on 127.0.0.1:0. It panics if it cannot
// listen, as httptest.NewServer does.
func NewServer(opts ...Option) *Server {
	s := &Server{
		APIKey:     DefaultAPIKey,
		Username:   DefaultUsername,
		Password:   DefaultPassword,
		now:        time.Now,
		sessions:   map[string]*session{},
		reject:     map[string]bool{},
		seenKeys:   map[string]bool{},
		codesByInt: map[string][]int{},
		cardIndex:  map[string]int{},
		cardsByInt: map[string][]int{},
		conns:      map[net.Conn]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("oduyotest: listen: " + err.Error())
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	return s
}

// URL is the base URL to put in the client's config (no trailing slash).
func (s *Server) URL() string { return "http://" + s.addr }

// Addr is the host:port the server listens on; it stays the same across
// SetDown.
func (s *Server) Addr() string { return s.addr }

func (s *Server) serve(ln net.Listener) {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ConnState: s.track}
	s.srv = srv
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
}

func (s *Server) track(c net.Conn, st http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	switch st {
	case http.StateNew:
		s.conns[c] = true
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
	}
}

// stop closes the listener and resets every open connection: with no
// orderly close there is no TIME_WAIT on the server's port, so it can be
// bound again at once (Windows does not reuse such a port).
func (s *Server) stop() {
	s.connMu.Lock()
	for c := range s.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
	}
	s.connMu.Unlock()
	_ = s.srv.Close()
	s.serving.Wait()
}

// Close stops the server and drops every connection.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if !s.down {
		s.stop()
	}
}

// SetDown takes the server off the network (connections are refused and
// open ones dropped) or brings it back on the same address. It panics if
// the address cannot be bound again within 5 seconds.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.down == down {
		return
	}
	if down {
		s.stop()
		s.down = true
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			s.down = false
			return
		}
		if time.Now().After(deadline) {
			panic("oduyotest: listen again on " + s.addr + ": " + err.Error())
		}
		time.Sleep(20 * time.Millisecond) // the OS may hold the port briefly
	}
}

// SetCredentials changes the accepted credentials. Sessions already
// issued stay valid.
func (s *Server) SetCredentials(apiKey, username, password string) {
	s.mu.Lock()
	s.APIKey, s.Username, s.Password = apiKey, username, password
	s.mu.Unlock()
}

// SetLoginStyle changes the shape of later login answers.
func (s *Server) SetLoginStyle(st LoginStyle) {
	s.mu.Lock()
	s.style = st
	s.mu.Unlock()
}

// FailNext makes the next n record requests (kasa or special code) fail
// with f, after any faults already queued.
func (s *Server) FailNext(n int, f Fault) {
	s.mu.Lock()
	for range n {
		s.faults = append(s.faults, f)
	}
	s.mu.Unlock()
}

// Intercept makes every request, on every path (login, records, list,
// anything else), answer with f until Intercept(nil): a captive portal or
// a proxy in front of the server. Intercepted requests count nowhere.
func (s *Server) Intercept(f *Fault) {
	s.mu.Lock()
	if f != nil {
		c := *f
		f = &c
	}
	s.intercept = f
	s.mu.Unlock()
}

// FailNextList makes the next n list calls fail with f.
func (s *Server) FailNextList(n int, f Fault) {
	s.mu.Lock()
	for range n {
		s.listFaults = append(s.listFaults, f)
	}
	s.mu.Unlock()
}

// IgnoreListFilters makes the list call return every special code,
// whatever its filters (a server that does not honour them).
func (s *Server) IgnoreListFilters(ignore bool) {
	s.mu.Lock()
	s.ignoreFilt = ignore
	s.mu.Unlock()
}

// RequireKasaID makes kasa updates without an "id" answer 404
// {"status": false}, as a server that finds cards by their Ödüyo id only
// would.
func (s *Server) RequireKasaID(require bool) {
	s.mu.Lock()
	s.needKasaID = require
	s.mu.Unlock()
}

// AddKasaCard puts a kasa card in the table the kasa list call reads (an
// update with an id adds or changes its card too).
func (s *Server) AddKasaCard(id, integrationID string) {
	s.mu.Lock()
	s.putCard(id, integrationID)
	s.mu.Unlock()
}

func (s *Server) putCard(id, integrationID string) {
	if i, ok := s.cardIndex[id]; ok {
		old := s.cards[i].IntegrationID
		if old == integrationID {
			return
		}
		idx := s.cardsByInt[old]
		for j, v := range idx {
			if v == i {
				s.cardsByInt[old] = append(idx[:j:j], idx[j+1:]...)
				break
			}
		}
		s.cards[i].IntegrationID = integrationID
		s.cardsByInt[integrationID] = append(s.cardsByInt[integrationID], i)
		return
	}
	s.cardIndex[id] = len(s.cards)
	s.cardsByInt[integrationID] = append(s.cardsByInt[integrationID], len(s.cards))
	s.cards = append(s.cards, KasaRow{ID: id, IntegrationID: integrationID, Status: "1"})
}

// AddSpecialCode puts a special code in the table the special code list
// call reads, as if created earlier (not in Delivered).
func (s *Server) AddSpecialCode(integrationID, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codesByInt[integrationID] = append(s.codesByInt[integrationID], len(s.codes))
	s.codes = append(s.codes, ListRow{ID: strconv.Itoa(100_000 + len(s.codes)), IntegrationID: integrationID, Code: code, Status: "1",
		CreatedIn: s.now().Format("2006-01-02 15:04:05")})
}

// KasaCards returns the kasa card table.
func (s *Server) KasaCards() []KasaRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]KasaRow(nil), s.cards...)
}

// FailNextLogin makes the next n login requests fail with f.
func (s *Server) FailNextLogin(n int, f Fault) {
	s.mu.Lock()
	for range n {
		s.loginFaults = append(s.loginFaults, f)
	}
	s.mu.Unlock()
}

// FailAlways makes every record request without a queued fault fail with f
// until ClearFaults.
func (s *Server) FailAlways(f Fault) {
	s.mu.Lock()
	s.always = &f
	s.mu.Unlock()
}

// ClearFaults drops queued and standing faults, session expiry and
// rejections.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults, s.loginFaults, s.listFaults, s.always = nil, nil, nil, nil
	s.expireAfter = 0
	s.reject = map[string]bool{}
	s.mu.Unlock()
}

// Reject makes records whose integration_id (or kasa id) is one of ids
// answer 404 {"status": false}, as the spec shows for a refused record.
func (s *Server) Reject(ids ...string) {
	s.mu.Lock()
	for _, id := range ids {
		s.reject[id] = true
	}
	s.mu.Unlock()
}

// ExpireSessionsAfter makes every session answer 401 once it has been
// used for n record calls (n <= 0: sessions never expire).
func (s *Server) ExpireSessionsAfter(n int) {
	s.mu.Lock()
	s.expireAfter = n
	s.mu.Unlock()
}

// ExpireSessions invalidates every session issued so far.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	for _, ss := range s.sessions {
		ss.valid = false
	}
	s.mu.Unlock()
}

// Delivered returns a copy of the accepted records in order.
func (s *Server) Delivered() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.delivered...)
}

// Logins counts login requests (successful or not).
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// Requests counts record requests (kasa and special code), whatever their
// outcome.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Lists counts list calls (lookups and the client's probes).
func (s *Server) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

// Probes counts requests to any other path.
func (s *Server) Probes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.probes
}

// Sessions returns the session ids issued so far, oldest first.
func (s *Server) Sessions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.intercept
	s.mu.Unlock()
	if f != nil && applyFault(w, r, *f) {
		return
	}
	switch r.URL.Path {
	case LoginPath:
		s.serveLogin(w, r)
	case KasaUpdatePath:
		s.serveRecord(w, r, KindKasa)
	case SpecialCodePath:
		s.serveRecord(w, r, KindSpecialCode)
	case SpecialCodeListPath:
		s.serveList(w, r, false)
	case KasaListPath:
		s.serveList(w, r, true)
	default:
		s.mu.Lock()
		s.probes++
		s.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = fmt.Fprint(w, "<!doctype html><title>Ödüyo</title><p>Ödüyo</p>\n")
	}
}

// applyFault plays f; it reports whether the request is finished.
func applyFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if f.Reset {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0) // close sends RST
				}
				_ = conn.Close()
			}
		}
		return true
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	status := f.Status
	switch {
	case f.HTML:
		if status == 0 {
			status = http.StatusOK
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, "<html><head><title>%d</title></head><body><h1>%d %s</h1><hr>nginx</body></html>\n",
			status, status, http.StatusText(status))
		return true
	case f.Malformed:
		if status == 0 {
			status = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, `{"status": tru, "data": "Guncelleme`)
		return true
	case f.Redirect != "":
		if status == 0 {
			status = http.StatusFound
		}
		w.Header().Set("Location", f.Redirect)
		w.WriteHeader(status)
		return true
	case f.Body != "":
		if status == 0 {
			status = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, f.Body)
		return true
	case status != 0:
		writeJSON(w, status, answer{Message: http.StatusText(status)})
		return true
	}
	return false
}

// answer is the envelope of the server's JSON answers, status first as in
// the spec.
type answer struct {
	Status  bool   `json:"status"`
	Data    any    `json:"data,omitempty"`
	Message string `json:"message,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// nextFault takes the first queued fault that applies to kind ("" for
// login and list calls), else the standing one.
func (s *Server) nextFault(queue *[]Fault, always *Fault, kind string) (Fault, bool) {
	for i, f := range *queue {
		if f.Only == "" || f.Only == kind {
			*queue = append((*queue)[:i:i], (*queue)[i+1:]...)
			return f, true
		}
	}
	if always != nil && (always.Only == "" || always.Only == kind) {
		return *always, true
	}
	return Fault{}, false
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.logins++
	f, faulty := s.nextFault(&s.loginFaults, nil, "")
	s.mu.Unlock()
	if faulty && applyFault(w, r, f) {
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, answer{Message: "method not allowed"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, answer{Message: "bad form"})
		return
	}
	s.mu.Lock()
	ok := r.PostForm.Get("username") == s.Username &&
		r.PostForm.Get("password") == s.Password &&
		r.PostForm.Get("oduyo_api_key") == s.APIKey
	style := s.style
	var sid string
	if ok {
		sid = newSessionID()
		s.sessions[sid] = &session{valid: true}
		s.issued = append(s.issued, sid)
	}
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusUnauthorized, answer{Message: "Kullanıcı adı veya şifre hatalı"})
		return
	}
	switch style {
	case LoginJSONSessionID:
		writeJSON(w, http.StatusOK, map[string]any{"status": true, "session_id": sid})
	case LoginJSONUpper:
		writeJSON(w, http.StatusOK, map[string]any{"SESSION_ID": sid})
	case LoginJSONToken:
		writeJSON(w, http.StatusOK, map[string]any{"status": true, "token": sid})
	case LoginJSONNested:
		writeJSON(w, http.StatusOK, map[string]any{"status": true, "data": map[string]any{"SESSION_ID": sid, "user": "Kasa Kullanıcısı"}})
	case LoginBareToken:
		w.Header().Set("Content-Type", "text/plain")
		_, _ = fmt.Fprintln(w, sid)
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": true, "data": sid})
	}
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return "sid" + hex.EncodeToString(b[:])
}

// errBadBody is the reason a record body is refused.
var errBadBody = errors.New(`body must be {"column": {…}}`)

func (s *Server) serveRecord(w http.ResponseWriter, r *http.Request, kind string) {
	s.mu.Lock()
	s.requests++
	f, faulty := s.nextFault(&s.faults, s.always, kind)
	s.mu.Unlock()
	if faulty && !f.Stored && applyFault(w, r, f) {
		return
	}
	if !s.authorized(w, r, true) {
		return
	}
	column, id, intID, err := decodeRecord(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, answer{Message: err.Error()})
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	if s.reject[intID] || (id != "" && s.reject[id]) || (kind == KindKasa && id == "" && s.needKasaID) {
		s.mu.Unlock()
		writeJSON(w, http.StatusNotFound, answer{})
		return
	}
	d := Delivery{
		Seq:            len(s.delivered) + 1,
		Kind:           kind,
		Column:         column,
		ID:             id,
		IntegrationID:  intID,
		IdempotencyKey: key,
		At:             s.now(),
		Duplicate:      key != "" && s.seenKeys[key],
	}
	if key != "" {
		s.seenKeys[key] = true
	}
	s.delivered = append(s.delivered, d)
	if kind == KindKasa && id != "" {
		s.putCard(id, intID)
	}
	if kind == KindSpecialCode {
		var c map[string]any
		_ = json.Unmarshal(column, &c)
		s.codesByInt[intID] = append(s.codesByInt[intID], len(s.codes))
		s.codes = append(s.codes, ListRow{ID: strconv.Itoa(d.Seq), IntegrationID: intID, Code: fmt.Sprint(c["code"]),
			Status: fmt.Sprint(c["status"]), CreatedIn: d.At.Format("2006-01-02 15:04:05")})
	}
	s.mu.Unlock()
	if faulty && f.Stored {
		f.Stored = false
		if applyFault(w, r, f) {
			return
		}
	}
	if kind == KindKasa {
		writeJSON(w, http.StatusOK, answer{Status: true, Data: "Guncelleme islemi Basarili"})
		return
	}
	writeJSON(w, http.StatusOK, answer{Status: true, Data: fmt.Sprintf("%q", "Erp Special Code successfully added id <"+strconv.Itoa(d.Seq)+">")})
}

// authorized checks the method, the API key, the session and the content
// type, answering the request when one is wrong. count: the call counts
// toward ExpireSessionsAfter.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request, count bool) bool {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, answer{Message: "method not allowed"})
		return false
	}
	s.mu.Lock()
	apiKeyOK := r.Header.Get("Apikey") == s.APIKey
	ss := s.sessions[r.Header.Get("Authorization")]
	sessionOK := ss != nil && ss.valid
	if sessionOK && count {
		ss.calls++
		if s.expireAfter > 0 && ss.calls > s.expireAfter {
			ss.valid, sessionOK = false, false
		}
	}
	s.mu.Unlock()
	switch {
	case !apiKeyOK:
		writeJSON(w, http.StatusForbidden, answer{Message: "Geçersiz API anahtarı"})
		return false
	case !sessionOK:
		writeJSON(w, http.StatusUnauthorized, answer{Message: "Oturum geçersiz veya süresi dolmuş"})
		return false
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeJSON(w, http.StatusUnsupportedMediaType, answer{Message: "content type must be application/json"})
		return false
	}
	return true
}

// listFilter is one entry of the list call's "filters".
type listFilter struct {
	Field    string `json:"field"`
	Operator string `json:"operator"`
	Value    string `json:"value"`
}

// serveList answers POST …/erp_special_code/list (kasa: …/erp_kasa_fisi/list,
// over the kasa card table) as the public docs describe it: filters ("" or a list; the operator "=" on id,
// integration_id, code or status is understood, others are refused with
// 400), limit and offset as strings (offset is the lowest id), 200 with
// the rows, or 404 {"status": false} when nothing matches.
func (s *Server) serveList(w http.ResponseWriter, r *http.Request, kasa bool) {
	s.mu.Lock()
	s.lists++
	f, faulty := s.nextFault(&s.listFaults, nil, "")
	s.mu.Unlock()
	if faulty && applyFault(w, r, f) {
		return
	}
	if !s.authorized(w, r, false) {
		return
	}
	var body struct {
		Filters json.RawMessage `json:"filters"`
		Limit   string          `json:"limit"`
		Offset  string          `json:"offset"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, answer{Message: "bad list body"})
		return
	}
	var filters []listFilter
	if f := strings.TrimSpace(string(body.Filters)); f != "" && f != `""` && f != "null" {
		if err := json.Unmarshal(body.Filters, &filters); err != nil {
			writeJSON(w, http.StatusBadRequest, answer{Message: "filters must be \"\" or a list"})
			return
		}
	}
	limit, err1 := strconv.Atoi(body.Limit)
	offset, err2 := strconv.Atoi(body.Offset)
	if err1 != nil || err2 != nil || limit < 1 {
		writeJSON(w, http.StatusBadRequest, answer{Message: "limit and offset are required, as strings"})
		return
	}
	for _, f := range filters {
		switch {
		case f.Operator != "=":
			writeJSON(w, http.StatusBadRequest, answer{Message: "operator not supported by the fake: " + f.Operator})
			return
		case f.Field != "id" && f.Field != "integration_id" && f.Field != "code" && f.Field != "status":
			writeJSON(w, http.StatusBadRequest, answer{Message: "unknown filter field " + f.Field})
			return
		}
	}
	s.mu.Lock()
	ignore := s.ignoreFilt
	n, byIntIdx := len(s.codes), s.codesByInt
	table := func(i int) ListRow { return s.codes[i] }
	if kasa {
		n, byIntIdx = len(s.cards), s.cardsByInt
		table = func(i int) ListRow {
			c := s.cards[i]
			return ListRow{ID: c.ID, IntegrationID: c.IntegrationID, Status: c.Status}
		}
	}
	// The table, or the rows of one integration_id when a filter names it.
	idx := make([]int, 0, n)
	byInt := false
	for _, f := range filters {
		if f.Field == "integration_id" && !ignore {
			idx, byInt = append(idx, byIntIdx[f.Value]...), true
			break
		}
	}
	if !byInt {
		for i := range n {
			idx = append(idx, i)
		}
	}
	sortByID(idx, table) // ids ascending, as the client's sorting asks (offset is the lowest id)
	var rows []any
	for _, i := range idx {
		row := table(i)
		if seq, _ := strconv.Atoi(row.ID); seq < offset || len(rows) == limit {
			continue
		}
		match := true
		for _, f := range filters {
			var v string
			switch f.Field {
			case "id":
				v = row.ID
			case "integration_id":
				v = row.IntegrationID
			case "code":
				v = row.Code
			case "status":
				v = row.Status
			}
			match = match && v == f.Value
		}
		if match || ignore {
			if kasa {
				rows = append(rows, KasaRow{ID: row.ID, IntegrationID: row.IntegrationID, Status: row.Status})
			} else {
				rows = append(rows, row)
			}
		}
	}
	s.mu.Unlock()
	if len(rows) == 0 {
		writeJSON(w, http.StatusNotFound, answer{})
		return
	}
	writeJSON(w, http.StatusOK, answer{Status: true, Data: rows})
}

func decodeRecord(r *http.Request) (column json.RawMessage, id, intID string, err error) {
	var body struct {
		Column json.RawMessage `json:"column"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err := dec.Decode(&body); err != nil || len(body.Column) == 0 {
		return nil, "", "", errBadBody
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body.Column, &fields); err != nil || fields == nil {
		return nil, "", "", errBadBody
	}
	scalar := func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return strings.TrimSpace(string(raw))
	}
	if raw, ok := fields["id"]; ok {
		id = scalar(raw)
	}
	if raw, ok := fields["integration_id"]; ok {
		intID = scalar(raw)
	}
	return body.Column, id, intID, nil
}

func sortByID(idx []int, row func(int) ListRow) {
	slices.SortStableFunc(idx, func(a, b int) int {
		x, _ := strconv.Atoi(row(a).ID)
		y, _ := strconv.Atoi(row(b).ID)
		return cmp.Compare(x, y)
	})
}
