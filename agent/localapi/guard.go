package localapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// hostGuard decides which Host and Origin a request may name (against DNS
// rebinding and cross-site requests from a page in the till's browser).
//
// While the API listens on loopback only 127.0.0.1, ::1 and localhost are
// served (and the loopback address it listens on); a widened listen (an
// unspecified or a network address) adds the machine's host name, its
// interface addresses and the extra names of api.allowed_hosts. A port in
// Host must be the port the connection came in on. A request that reaches
// the handler without a network connection (a direct ServeHTTP call) is not
// checked: no browser can have named it.
type hostGuard struct {
	widened bool
	listen  netip.Addr // the listen address when it is an IP (loopback mode)
	extra   map[string]bool
	names   map[string]bool // the machine's names (widened only)

	mu      sync.Mutex
	addrs   map[netip.Addr]bool // the machine's addresses (widened only)
	addrsAt time.Time
}

// addrRefresh is how often, at most, the machine's addresses are read
// again when a Host names an address not known (DHCP may change them).
const addrRefresh = 5 * time.Second

func newHostGuard(listen string, allowed []string) *hostGuard {
	g := &hostGuard{extra: map[string]bool{}}
	for _, h := range allowed {
		if h = normHost(h); h != "" {
			g.extra[h] = true
		}
	}
	host := listen
	if h, _, err := net.SplitHostPort(listen); err == nil {
		host = h
	}
	switch ip, err := netip.ParseAddr(strings.Trim(host, "[]")); {
	case listen == "":
		// Unknown: judged as loopback (the stricter choice).
	case strings.EqualFold(host, "localhost"):
	case err == nil && ip.IsLoopback():
		g.listen = ip.Unmap()
	default:
		g.widened = true
	}
	if g.widened {
		g.names = map[string]bool{}
		if hn, err := os.Hostname(); err == nil && hn != "" {
			hn = strings.ToLower(hn)
			g.names[hn] = true
			if short, _, ok := strings.Cut(hn, "."); ok && short != "" {
				g.names[short] = true
			}
		}
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && !ip.IsUnspecified() {
			g.extra[ip.Unmap().String()] = true
		}
	}
	return g
}

// normHost is a host name or address in the form compared: lower case,
// IPv6 without brackets, an address in its canonical form.
func normHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if ip, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return ip.Unmap().String()
	}
	return h
}

// allowedHost reports whether hostport (a Host header, or the host of an
// Origin) names this server; port is the port the connection came in on
// ("" when any port is accepted).
func (g *hostGuard) allowedHost(hostport, port string) bool {
	host, p := hostport, ""
	switch {
	case strings.HasPrefix(hostport, "["):
		i := strings.IndexByte(hostport, ']')
		if i < 0 {
			return false
		}
		host, p = hostport[1:i], hostport[i+1:]
		if p != "" {
			if p = strings.TrimPrefix(p, ":"); p == hostport[i+1:] || p == "" {
				return false
			}
		}
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return false
		}
	case strings.Count(hostport, ":") == 1:
		host, p, _ = strings.Cut(hostport, ":")
		if p == "" {
			return false
		}
	case strings.Contains(hostport, ":"):
		return false // an IPv6 address without brackets is not a Host
	}
	if p != "" && port != "" && p != port {
		return false
	}
	if strings.Trim(p, "0123456789") != "" {
		return false
	}
	h := normHost(host)
	if h == "" {
		return false
	}
	if h == "localhost" || h == "127.0.0.1" || h == "::1" || g.extra[h] {
		return true
	}
	ip, err := netip.ParseAddr(h)
	if err == nil && g.listen.IsValid() && ip == g.listen {
		return true
	}
	if !g.widened {
		return false
	}
	if err != nil {
		return g.names[h]
	}
	return g.machineAddr(ip)
}

// machineAddr reports whether ip is an address of one of the machine's
// interfaces, reading them again at most every addrRefresh.
func (g *hostGuard) machineAddr(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.addrs[ip] {
		return true
	}
	if g.addrs != nil && time.Since(g.addrsAt) < addrRefresh {
		return false
	}
	g.addrs, g.addrsAt = map[netip.Addr]bool{}, time.Now()
	as, _ := net.InterfaceAddrs()
	for _, a := range as {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			g.addrs[pfx.Addr().Unmap()] = true
		}
	}
	return g.addrs[ip]
}

// changesState: the methods a foreign Origin may not use.
func changesState(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// check answers a request whose Host or Origin is not this server's (421
// or 403, and the connection is closed) and reports whether it did.
func (g *hostGuard) check(w http.ResponseWriter, r *http.Request) bool {
	local, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false // not from the network
	}
	port := ""
	if _, p, err := net.SplitHostPort(local.String()); err == nil {
		port = p
	}
	if r.Host == "" && !r.ProtoAtLeast(1, 1) {
		// HTTP/1.0 without Host: no browser sends that.
	} else if !g.allowedHost(r.Host, port) {
		refuse := fmt.Sprintf("Host %q is not this agent's name: the local API answers only to 127.0.0.1, [::1] and localhost (or, when api.listen is widened, this machine's names and api.allowed_hosts)", r.Host)
		writeErrorClose(w, r, http.StatusMisdirectedRequest, refuse, "Host")
		return true
	}
	if o := r.Header.Values("Origin"); len(o) > 0 && changesState(r.Method) && !g.allowedOrigin(o) {
		writeErrorClose(w, r, http.StatusForbidden, fmt.Sprintf("Origin %q is not this agent: a web page of another site may not change anything here", strings.Join(o, ", ")), "Origin")
		return true
	}
	return false
}

// allowedOrigin: exactly one Origin, http or https, naming a host this
// server answers to (any port: a page served by this machine).
func (g *hostGuard) allowedOrigin(vals []string) bool {
	if len(vals) != 1 {
		return false
	}
	u, err := url.Parse(strings.TrimSpace(vals[0]))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return false
	}
	return g.allowedHost(u.Host, "")
}

// MinNonce and MaxNonce bound the nonce of GET /v1/hello, in bytes. A
// client should send a fresh random one of 16 bytes or more (in hex): a
// short or repeated nonce lets a program that asked the agent earlier
// replay its answer.
const (
	MinNonce = 1
	MaxNonce = 256
)

// Hello is the body of GET /v1/hello: the proof that this server knows the
// token, for a client that has not sent it yet.
type Hello struct {
	HMAC string `json:"hmac"` // hex(HMAC-SHA256(key = token, message = nonce))
}

// HelloMAC is hex(HMAC-SHA256(key = token, message = nonce)).
func HelloMAC(token, nonce string) string {
	m := hmac.New(sha256.New, []byte(strings.TrimSpace(token)))
	m.Write([]byte(nonce))
	return hex.EncodeToString(m.Sum(nil))
}

// hello: GET /v1/hello?nonce=N, no token.
func (h *handler) hello(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n := q.Get("nonce")
	if len(q["nonce"]) != 1 || len(n) < MinNonce || len(n) > MaxNonce {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("nonce must be one query parameter of %d to %d characters (send 16 fresh random bytes in hex)", MinNonce, MaxNonce), "nonce")
		return
	}
	if len(h.token) == 0 {
		writeError(w, http.StatusServiceUnavailable, "the agent has no api.token", "")
		return
	}
	writeJSON(w, http.StatusOK, Hello{HMAC: HelloMAC(string(h.token), n)})
}

// writeErrorClose answers an error and closes the connection after it
// without reading what is left of the request body (the Server sees the
// "Connection: close" and stops reading at once).
func writeErrorClose(w http.ResponseWriter, r *http.Request, code int, msg, field string) {
	w.Header().Set("Connection", "close")
	writeError(w, code, msg, field)
}
