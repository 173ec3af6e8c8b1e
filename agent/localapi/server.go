package localapi

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"
)

// What one caller can cost the agent. A local process without the token
// gets no further than its headers, so the limits are on connections and
// headers; the body limit (MaxBody) applies once the token is checked.
const (
	// MaxHeaderBytes caps the request line and headers together; beyond it
	// the answer is 431 and the connection is closed.
	MaxHeaderBytes = 16 << 10
	// MaxConns caps the open connections. When all are taken, what has
	// already arrived on a new connection is read at once (without
	// waiting). A new connection whose headers are complete — a POS sends
	// its request in one go — takes the place of a connection that is not
	// inside a request: the oldest one trickling headers it has not
	// finished, else one silent for over 20 ms, else one idle for over MinAge;
	// it waits aside up to MinAge for one; after the trickling ones, a
	// connection inside a body that has stalled (no byte for 20 ms, or
	// MinAge for a newcomer without a whole request) gives its place, the
	// one stalled longest first. Any other new connection takes
	// only the place of a trickling one, or of one silent (idle) for over
	// MinAge (4×MinAge), and is refused (503) otherwise — one that has
	// sent nothing yet first waits aside up to MinAge for its first bytes.
	// Any other connection inside a request, or whose headers are all in,
	// is never pushed out.
	MaxConns = 256
	// MinAge is how long a connection that has sent nothing is safe from
	// being pushed out by another connection that has not sent a whole
	// request either; an idle keep-alive connection is safe for four
	// times as long.
	MinAge = 500 * time.Millisecond
	// HeaderTimeout is how long the request line and headers may take.
	HeaderTimeout = 5 * time.Second
	// IdleTimeout closes a keep-alive connection that sends nothing.
	IdleTimeout = 30 * time.Second
	// RequestTimeout bounds reading a whole request and writing its answer.
	RequestTimeout = 30 * time.Second
	// A request body must arrive at a minimum rate, or the connection is
	// closed (after a 408): BodyGraceBytes (or the whole body, when it is
	// smaller) within BodyGrace of the handler starting, then at least
	// BodyMinRate bytes per second; a record of 1 MiB needs 31 s at that
	// floor, within RequestTimeout. A connection whose body has stalled
	// (no byte for a moment) is pushed out for a new request like one
	// trickling its headers.
	BodyGrace      = 2 * time.Second
	BodyGraceBytes = 16 << 10
	BodyMinRate    = 32 << 10
)

// ServerOptions are the limits of a Server; zero fields take the defaults
// above (tests lower them).
type ServerOptions struct {
	MaxHeaderBytes int
	MaxConns       int
	MinAge         time.Duration
	HeaderTimeout  time.Duration
	IdleTimeout    time.Duration
	RequestTimeout time.Duration
	BodyGrace      time.Duration
	BodyGraceBytes int64
	BodyMinRate    int64 // bytes per second
	// ShutdownGrace is how long Serve lets requests in flight finish after
	// its context is done; then their contexts are cancelled and their
	// connections closed. Default 2s.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
}

// ServerStats counts what the connection limit did.
type ServerStats struct {
	Open    int    `json:"connections"`   // open now
	Evicted uint64 `json:"evicted_total"` // closed to make room for a new one
	Refused uint64 `json:"refused_total"` // new connections answered 503: no connection could make room
	// SlowBodies counts connections closed because their request body
	// arrived slower than the floor (BodyGrace, BodyMinRate).
	SlowBodies uint64 `json:"slow_bodies_total"`
	// RefusedWaiting counts, among Refused, the connections that sent
	// nothing: too many were waiting aside already, or they waited MinAge.
	RefusedWaiting uint64 `json:"refused_silent_total"`
}

// Server serves the local API with the limits above. Safe for concurrent
// use; Serve runs once.
type Server struct {
	opts     ServerOptions
	srv      *http.Server
	log      *slog.Logger
	evicted  atomic.Uint64
	refused  atomic.Uint64
	refusedW atomic.Uint64
	slow     atomic.Uint64
	handlers atomic.Int64 // requests in the handler now

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

// NewServer wraps h (the API of NewHandler) in an HTTP server with bounded
// cost per caller.
func NewServer(h http.Handler, o ServerOptions) *Server {
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = MaxHeaderBytes
	}
	if o.MaxConns <= 0 {
		o.MaxConns = MaxConns
	}
	if o.MinAge <= 0 {
		o.MinAge = MinAge
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = HeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = IdleTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = RequestTimeout
	}
	if o.BodyGrace <= 0 {
		o.BodyGrace = BodyGrace
	}
	if o.BodyGraceBytes <= 0 {
		o.BodyGraceBytes = BodyGraceBytes
	}
	if o.BodyMinRate <= 0 {
		o.BodyMinRate = BodyMinRate
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: o, log: o.Logger, conns: map[*trackedConn]struct{}{}}
	// net/http reads up to MaxHeaderBytes + 4096 bytes (its bufio slop)
	// before it answers 431; take the slop off so the cap is what it says.
	hdr := max(o.MaxHeaderBytes-4096, 1024)
	s.srv = &http.Server{
		Handler:           s.track(h),
		MaxHeaderBytes:    hdr,
		ReadHeaderTimeout: o.HeaderTimeout,
		ReadTimeout:       o.RequestTimeout,
		WriteTimeout:      o.RequestTimeout,
		IdleTimeout:       o.IdleTimeout,
		ConnState:         s.connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*trackedConn); ok {
				return context.WithValue(ctx, connKey{}, tc)
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	return s
}

// Stats reports the connection counters.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return ServerStats{Open: n, Evicted: s.evicted.Load(), Refused: s.refused.Load(), RefusedWaiting: s.refusedW.Load(), SlowBodies: s.slow.Load()}
}

// Serve answers on ln until ctx is done, then stops: requests in flight
// get ShutdownGrace to finish, after which their contexts are cancelled
// and every connection is closed. It returns nil after a stop caused by
// ctx, or the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	s.srv.BaseContext = func(net.Listener) context.Context { return reqCtx }
	ll := newLimitListener(ln, s)
	defer ll.Wait()
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(ll) }()
	select {
	case err := <-served:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("local API: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownGrace)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.log.Warn("local API: requests still in flight at stop were cancelled", "grace", s.opts.ShutdownGrace)
		cancelRequests()
		s.srv.Close()
		// Close does not wait for handlers; give the cancelled ones a
		// moment to return, so that what they use can be closed after us.
		for t0 := time.Now(); s.handlers.Load() > 0 && time.Since(t0) < time.Second; {
			time.Sleep(5 * time.Millisecond)
		}
	}
	<-served
	return nil
}

type connKey struct{}

// track marks a connection as inside a request while h runs: such a
// connection is not closed to make room, unless its body has stalled. The
// body must arrive at the minimum rate (rateBody). An answer that says
// "Connection: close" (401, 413, 421, …) ends the request: what is left of
// its body is not read, and the connection no longer counts against
// MaxConns while net/http closes it.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.Add(1)
		defer s.handlers.Add(-1)
		tc, ok := r.Context().Value(connKey{}).(*trackedConn)
		if !ok {
			h.ServeHTTP(w, r)
			return
		}
		tc.handling.Add(1)
		defer tc.handling.Add(-1)
		var rb *rateBody
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			now := time.Now()
			rb = &rateBody{ReadCloser: r.Body, tc: tc, start: now, want: r.ContentLength}
			tc.bodyAt.Store(now.UnixNano())
			tc.inBody.Store(true)
			defer tc.inBody.Store(false)
			r.Body = rb
		}
		h.ServeHTTP(w, r)
		if w.Header().Get("Connection") == "close" {
			if rb != nil && !rb.eof {
				// net/http would wait to drain up to 256 KiB of the body
				// before closing. Only what has already arrived is read
				// (closing on unread bytes makes the kernel send a reset,
				// which can cost the client the answer); nothing more is
				// waited for.
				tc.Conn.SetReadDeadline(time.Now().Add(refusalLinger))
			}
			s.forget(tc)
		}
	})
}

// refusalLinger is how long the rest of a refused request's body is read
// before its connection is closed: enough for bytes already sent, never
// enough to wait for a slow sender.
const refusalLinger = 10 * time.Millisecond

// rateBody is a request body that must arrive at the Server's minimum
// rate; a body that falls behind closes its connection.
type rateBody struct {
	io.ReadCloser
	tc    *trackedConn
	start time.Time
	want  int64 // Content-Length, -1 when unknown (chunked)
	n     int64
	eof   bool
}

// errSlowBody is the body's read error when it falls behind.
var errSlowBody = errors.New("request body arrived too slowly")

func (b *rateBody) Read(p []byte) (int, error) {
	if b.eof {
		return b.ReadCloser.Read(p)
	}
	o := &b.tc.s.opts
	d := b.start.Add(o.BodyGrace)
	if extra := b.n - o.BodyGraceBytes; extra > 0 {
		d = d.Add(time.Duration(float64(extra) / float64(o.BodyMinRate) * float64(time.Second)))
	}
	if lim := b.start.Add(o.RequestTimeout); d.After(lim) {
		d = lim
	}
	b.tc.Conn.SetReadDeadline(d)
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if n > 0 {
		b.tc.bodyAt.Store(time.Now().UnixNano())
		if b.want >= 0 && b.n >= b.want {
			b.tc.inBody.Store(false) // all in, even if EOF is not read yet
		}
	}
	var ne net.Error
	switch {
	case err == io.EOF:
		// net/http has started its own read (and deadline) for the end
		// of the connection: the body's deadline is not touched again.
		b.eof = true
		b.tc.inBody.Store(false)
	case errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(d):
		b.tc.s.slow.Add(1)
		b.tc.s.log.Debug("local API: request body too slow, connection closed", "bytes", b.n, "after", time.Since(b.start).Round(time.Millisecond))
		b.tc.Conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		b.tc.Conn.Write(slowAnswer(o))
		b.tc.Close()
		return n, fmt.Errorf("%w (%d bytes in %s)", errSlowBody, b.n, time.Since(b.start).Round(time.Millisecond))
	}
	return n, err
}

func slowAnswer(o *ServerOptions) []byte {
	return cannedAnswer(http.StatusRequestTimeout, fmt.Sprintf("request body arrived too slowly: send %d bytes (or all of it) within %s, then at least %d bytes/s; the connection is closed",
		o.BodyGraceBytes, o.BodyGrace, o.BodyMinRate), "")
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	tc, ok := c.(*trackedConn)
	if !ok {
		return
	}
	switch st {
	case http.StateIdle:
		tc.partial.Store(false)
		tc.headersDone.Store(false)
		tc.tailLen = 0
		tc.since.Store(time.Now().UnixNano())
		tc.state.Store(int32(st))
	case http.StateClosed, http.StateHijacked:
		s.forget(tc)
	default:
		tc.state.Store(int32(st))
	}
}

func (s *Server) forget(tc *trackedConn) {
	s.mu.Lock()
	delete(s.conns, tc)
	s.mu.Unlock()
}

// admit registers a new connection, in place of another one when every
// slot is taken (see MaxConns). It returns false when tc must be refused.
func (s *Server) admit(tc *trackedConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) >= s.opts.MaxConns {
		victim := s.victimLocked(time.Now(), tc.headersDone.Load())
		if victim == nil {
			return false
		}
		delete(s.conns, victim)
		victim.Conn.Close() // its server goroutine sees the error and ends
		s.evicted.Add(1)
	}
	s.conns[tc] = struct{}{}
	return true
}

// minSilentAge protects a connection just accepted, whose request may not
// have been read yet, even from a newcomer with a whole request.
const minSilentAge = 20 * time.Millisecond

// victimLocked picks the connection to close for a newcomer, never one
// inside a request or whose headers are all in unless its body has
// stalled: the oldest that has begun headers it has not finished; else the
// one whose body stalled longest (no byte for minSilentAge when urgent,
// MinAge otherwise); else, for a newcomer with a whole request
// (urgent), the oldest silent one (older than minSilentAge) and then the
// longest idle one (idle over MinAge: a polling POS keeps its connection);
// for another newcomer only one silent over MinAge or idle over 4×MinAge.
func (s *Server) victimLocked(now time.Time, urgent bool) *trackedConn {
	var trickling, silent, idle, stalled *trackedConn
	older := func(a, b *trackedConn) bool { return b == nil || a.since.Load() < b.since.Load() }
	stallAge := s.opts.MinAge
	if urgent {
		stallAge = minSilentAge
	}
	for c := range s.conns {
		if c.inBody.Load() {
			// inside its body: pushed out once no byte came for stallAge
			if at := c.bodyAt.Load(); now.UnixNano()-at >= int64(stallAge) && (stalled == nil || at < stalled.bodyAt.Load()) {
				stalled = c
			}
			continue
		}
		if c.handling.Load() > 0 || c.headersDone.Load() {
			continue
		}
		switch st := http.ConnState(c.state.Load()); {
		case st != http.StateNew && st != http.StateIdle:
			// between its headers and the handler, or finishing an answer
		case c.partial.Load():
			if older(c, trickling) {
				trickling = c
			}
		case st == http.StateIdle:
			if older(c, idle) {
				idle = c
			}
		case older(c, silent):
			silent = c
		}
	}
	if trickling != nil {
		return trickling
	}
	if stalled != nil {
		return stalled
	}
	age := func(c *trackedConn) time.Duration { return now.Sub(time.Unix(0, c.since.Load())) }
	if silent != nil && (urgent && age(silent) >= minSilentAge || age(silent) >= s.opts.MinAge) {
		return silent
	}
	if idle != nil && (urgent && age(idle) >= s.opts.MinAge || age(idle) >= 4*s.opts.MinAge) {
		return idle
	}
	return nil
}

// limitListener admits connections through the Server's limit. One
// goroutine accepts; a new connection that has sent nothing yet while
// every slot is taken waits aside (parked: at most 4×MaxConns of them,
// each at most MinAge; when that many wait, the one waiting longest
// without a byte gives way) for its first bytes instead of being refused
// at once, so that a POS whose request is a moment behind its connection
// is not taken for a silent hostile one.
type limitListener struct {
	net.Listener
	s      *Server
	ready  chan net.Conn // admitted connections, for Accept
	errc   chan error
	done   chan struct{} // closed by Close
	start  sync.Once
	close  sync.Once
	parked atomic.Int32
	wg     sync.WaitGroup // the accept loop and the parked connections

	pmu     sync.Mutex
	waiting *list.List // parked connections still without a byte, oldest first
}

func newLimitListener(ln net.Listener, s *Server) *limitListener {
	return &limitListener{Listener: ln, s: s, ready: make(chan net.Conn), errc: make(chan error), done: make(chan struct{}), waiting: list.New()}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.start.Do(func() {
		l.wg.Add(1)
		go l.acceptLoop()
	})
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; Wait then waits for the goroutines.
func (l *limitListener) Close() error {
	l.close.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Wait waits for the accept loop and the parked connections to end
// (after Close).
func (l *limitListener) Wait() { l.wg.Wait() }

func (l *limitListener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// net/http decides: it backs off and calls Accept again after a
			// temporary error (too many open files), or closes the listener.
			select {
			case l.errc <- err:
			case <-l.done:
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		tc := &trackedConn{Conn: c, s: l.s}
		tc.since.Store(time.Now().UnixNano())
		tc.state.Store(int32(http.StateNew))
		if !tc.peek(0) {
			c.Close() // the client has gone already
			continue
		}
		switch {
		case l.s.admit(tc):
			l.deliver(tc)
		case (len(tc.pre) == 0 || tc.headersDone.Load()) && (l.parked.Load() < int32(maxParkedPerConn*l.s.opts.MaxConns) || l.giveWay()):
			l.parked.Add(1)
			if len(tc.pre) == 0 {
				l.pmu.Lock()
				tc.waitElem = l.waiting.PushBack(tc)
				l.pmu.Unlock()
			}
			l.wg.Add(1)
			go l.park(tc)
		default:
			if len(tc.pre) == 0 {
				l.s.refusedW.Add(1)
			}
			l.s.refused.Add(1)
			refuse(c)
		}
	}
}

// maxParkedPerConn bounds the parked connections: this many per slot.
const maxParkedPerConn = 4

// giveWay closes the parked connection that has waited longest without a
// byte, to make room for a new one; false when there is none.
func (l *limitListener) giveWay() bool {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	for e := l.waiting.Front(); e != nil; e = l.waiting.Front() {
		tc := l.waiting.Remove(e).(*trackedConn)
		tc.waitElem = nil
		if tc.parkState.CompareAndSwap(parkWaiting, parkGaveWay) {
			tc.Conn.Close() // its park goroutine's read fails, and it ends
			l.s.refusedW.Add(1)
			l.s.refused.Add(1)
			return true
		}
	}
	return false
}

// The states of a parked connection.
const (
	parkWaiting int32 = iota // no byte yet
	parkGotBytes
	parkGaveWay // closed to make room
)

// park waits up to MinAge for the first bytes of a connection that found
// no room, then tries to admit it again; one whose request is whole goes
// on trying until MinAge has passed (a just-accepted connection is safe
// for minSilentAge, so room comes soon).
func (l *limitListener) park(tc *trackedConn) {
	defer l.wg.Done()
	defer l.parked.Add(-1)
	deadline := time.Now().Add(l.s.opts.MinAge)
	if len(tc.pre) == 0 {
		ok := tc.peek(l.s.opts.MinAge)
		l.pmu.Lock()
		if tc.waitElem != nil {
			l.waiting.Remove(tc.waitElem)
			tc.waitElem = nil
		}
		l.pmu.Unlock()
		if !tc.parkState.CompareAndSwap(parkWaiting, parkGotBytes) || !ok {
			tc.Conn.Close() // gave way, or the client has gone
			return
		}
	}
	for len(tc.pre) > 0 {
		if l.s.admit(tc) {
			l.deliver(tc)
			return
		}
		if !tc.headersDone.Load() || !time.Now().Before(deadline) {
			break
		}
		t := time.NewTimer(minSilentAge / 4)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			tc.Conn.Close()
			return
		}
	}
	if len(tc.pre) == 0 {
		l.s.refusedW.Add(1)
	}
	l.s.refused.Add(1)
	refuse(tc.Conn)
}

func (l *limitListener) deliver(c *trackedConn) {
	select {
	case l.ready <- c:
	case <-l.done:
		c.Conn.Close()
		l.s.forget(c)
	}
}

// peek reads what has already arrived on a new connection — at once when
// wait is 0, else waiting up to wait for the first bytes — to be served
// to net/http first, and notes whether the headers are complete. False
// when the connection is closed or failed.
func (c *trackedConn) peek(wait time.Duration) bool {
	buf := make([]byte, 4096)
	var n int
	var err error
	if wait == 0 {
		n, err = readNow(c.Conn, buf)
	} else {
		n, err = readWithin(c.Conn, buf, wait)
	}
	if n > 0 {
		c.pre = buf[:n]
		if c.endOfHeaders(c.pre) {
			c.headersDone.Store(true)
		}
		c.partial.Store(true)
	}
	return err == nil
}

// readWithin reads what arrives on c within wait; nothing is not an error.
func readWithin(c net.Conn, buf []byte, wait time.Duration) (int, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	c.SetReadDeadline(time.Time{})
	var ne net.Error
	if n == 0 && errors.As(err, &ne) && ne.Timeout() {
		return 0, nil
	}
	if n > 0 {
		return n, nil
	}
	return 0, err
}

// busyAnswer is written to a connection that finds every slot inside a
// request.
var busyAnswer = cannedAnswer(http.StatusServiceUnavailable, "too many connections to the local API: try again in a moment",
	"Retry-After: 1\r\n")

func refuse(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write(busyAnswer)
	c.Close()
}

// trackedConn is one accepted connection and what the limit needs to
// know about it.
type trackedConn struct {
	net.Conn
	s       *Server
	state   atomic.Int32 // http.ConnState
	since   atomic.Int64 // accepted, or idle since (UnixNano)
	partial atomic.Bool  // bytes arrived while new or idle: headers have begun
	// headersDone: the headers are all in; the request is about to reach
	// the handler, so the connection is not pushed out meanwhile.
	headersDone atomic.Bool
	tail        [3]byte // the last bytes read before the headers ended
	tailLen     int
	pre         []byte // read by peek, not yet by net/http
	parkState   atomic.Int32
	waitElem    *list.Element // in limitListener.waiting; guarded by its pmu
	handling    atomic.Int32  // requests of this connection in the handler
	inBody      atomic.Bool   // the handler has not read the whole body yet
	bodyAt      atomic.Int64  // the body's start or last byte (UnixNano)
	closed      sync.Once
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 { // read by peek, already counted
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.handling.Load() == 0 && !c.headersDone.Load() {
		if st := http.ConnState(c.state.Load()); st == http.StateNew || st == http.StateIdle {
			// Only net/http's goroutine of this connection reads here.
			if c.endOfHeaders(p[:n]) {
				c.headersDone.Store(true)
			}
			c.partial.Store(true)
		}
	}
	return n, err
}

// Write turns the plain-text answers net/http writes on its own (431 for
// headers over the cap, 400 for a malformed request) into the API's JSON
// error shape; everything else passes unchanged.
func (c *trackedConn) Write(p []byte) (int, error) {
	if c.handling.Load() == 0 {
		if j := jsonCanned(p, c.s.opts.MaxHeaderBytes); j != nil {
			if _, err := c.Conn.Write(j); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// endOfHeaders reports whether the blank line that ends the headers is in
// b, or spans the end of the bytes read before and b.
func (c *trackedConn) endOfHeaders(b []byte) bool {
	joined := append(c.tail[:c.tailLen:c.tailLen], b[:min(len(b), 3)]...)
	found := bytes.Contains(joined, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\r\n\r\n"))
	if len(b) >= 3 {
		c.tailLen = copy(c.tail[:], b[len(b)-3:])
	} else {
		t := append(c.tail[:c.tailLen:c.tailLen], b...)
		c.tailLen = copy(c.tail[:], t[max(0, len(t)-3):])
	}
	return found
}

func (c *trackedConn) Close() error {
	var err error
	c.closed.Do(func() {
		c.s.forget(c)
		err = c.Conn.Close()
	})
	return err
}

// cannedRE matches the answers net/http writes itself when it cannot read
// a request (server.go: "HTTP/1.1 <code> <text>" + errorHeaders + text).
var cannedRE = regexp.MustCompile(`\AHTTP/1\.1 ([45]\d\d) ([^\r\n]*)\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n([^\r\n]*)\z`)

func jsonCanned(p []byte, maxHeader int) []byte {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 4")) && !bytes.HasPrefix(p, []byte("HTTP/1.1 5")) {
		return nil
	}
	m := cannedRE.FindSubmatch(p)
	if m == nil {
		return nil
	}
	var code int
	fmt.Sscan(string(m[1]), &code)
	msg := string(m[3])
	if code == http.StatusRequestHeaderFieldsTooLarge {
		msg = fmt.Sprintf("request line and headers larger than %d bytes", maxHeader)
	}
	return cannedAnswer(code, msg, "")
}

// cannedAnswer is a whole HTTP/1.1 answer with the API's JSON error body;
// the connection is closed after it.
func cannedAnswer(code int, msg, extraHeaders string) []byte {
	body, _ := json.Marshal(ErrorBody{Error: msg})
	body = append(body, '\n')
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		code, http.StatusText(code), extraHeaders, len(body), body)
}
