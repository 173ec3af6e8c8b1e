package chaos

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig"
)

func TestAPIToken(t *testing.T) {
	f := newFixture(t, "", nil)
	f.mustStart()
	base := f.api().BaseURL
	auths := []string{"", "Bearer", "Bearer ", "Bearer wrong-token-0000000000", "Bearer " + apiToken[:len(apiToken)-1],
		"Bearer " + apiToken + "x", "Basic " + apiToken, "bearer " + apiToken[1:], "Token " + apiToken, apiToken}
	calls := []struct{ method, path, body string }{
		{"GET", "/v1/status", ""},
		{"GET", "/v1/license", ""},
		{"GET", "/metrics", ""},
		{"GET", "/v1/outbox?state=pending", ""},
		{"POST", "/v1/kasa", `{"integration_id":"tok-1","note":"x"}`},
		{"POST", "/v1/special-codes", `{"integration_id":"tok-2","code":"Ç"}`},
		{"POST", "/v1/outbox/1/retry", ""},
		{"DELETE", "/v1/outbox/1", ""},
		{"GET", "/no/such/path", ""},
	}
	n := 0
	for _, c := range calls {
		for _, auth := range auths {
			req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			f.record("401 body", body)
			n++
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with Authorization %.20q: %d, want 401", c.method, c.path, auth, resp.StatusCode)
			}
			if !strings.Contains(string(body), `"error"`) {
				t.Errorf("401 body %q is not a JSON error", body)
			}
		}
	}
	// Nothing got in.
	st, err := f.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Outbox.Enqueued != 0 || st.Outbox.Pending != 0 {
		t.Errorf("refused requests enqueued something: %+v", st.Outbox)
	}
	t.Logf("RESULT api-token refused=%d/%d", n, n)
}

// TestTokenComparedInConstantTime reads agent/localapi: the token is
// compared with crypto/subtle, and never with ==, bytes.Equal or the like.
func TestTokenComparedInConstantTime(t *testing.T) {
	fset := token.NewFileSet()
	files, _ := filepath.Glob("../../../agent/localapi/*.go")
	calls := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		n, problems := tokenComparisons(fset, file)
		calls += n
		for _, p := range problems {
			t.Error(p)
		}
	}
	if calls == 0 {
		t.Errorf("agent/localapi never calls subtle.ConstantTimeCompare")
	}
	// The checker itself sees a plain comparison.
	bad, err := parser.ParseFile(fset, "bad.go", `package x
func ok(got, token string) bool { return len(token) > 0 && got == token }
func ok2(got, token []byte) bool { return bytes.Equal(got, token) }`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, problems := tokenComparisons(fset, bad); n != 0 || len(problems) != 2 {
		t.Errorf("the checker found %d subtle calls and %q in a file with two plain comparisons", n, problems)
	}
}

// tokenComparisons counts subtle.ConstantTimeCompare calls in file and
// lists the comparisons of something named *token* that are not.
func tokenComparisons(fset *token.FileSet, file *ast.File) (subtleCalls int, problems []string) {
	mentionsToken := func(e ast.Expr) bool {
		found := false
		ast.Inspect(e, func(n ast.Node) bool {
			if isCall(n, "subtle", "ConstantTimeCompare") || isLenCall(n) {
				return false // its result is not the token
			}
			if id, ok := n.(*ast.Ident); ok && strings.Contains(strings.ToLower(id.Name), "token") {
				found = true
			}
			return !found
		})
		return found
	}
	ast.Inspect(file, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.CallExpr:
			sel, ok := x.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, _ := sel.X.(*ast.Ident)
			if pkg == nil {
				return true
			}
			switch fn := pkg.Name + "." + sel.Sel.Name; fn {
			case "subtle.ConstantTimeCompare":
				subtleCalls++
			case "bytes.Equal", "strings.EqualFold", "bytes.Compare", "strings.Compare", "reflect.DeepEqual":
				for _, a := range x.Args {
					if mentionsToken(a) {
						problems = append(problems, fmt.Sprintf("%s: the token is compared with %s, not in constant time", fset.Position(x.Pos()), fn))
						break
					}
				}
			}
		case *ast.BinaryExpr:
			if (x.Op == token.EQL || x.Op == token.NEQ) && (mentionsToken(x.X) || mentionsToken(x.Y)) &&
				!isEmptyString(x.X) && !isEmptyString(x.Y) {
				problems = append(problems, fmt.Sprintf("%s: the token is compared with %s, not in constant time", fset.Position(x.Pos()), x.Op))
			}
		}
		return true
	})
	return subtleCalls, problems
}

func isCall(n ast.Node, pkg, fn string) bool {
	c, ok := n.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg && sel.Sel.Name == fn
}

func isLenCall(e ast.Node) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	id, ok := c.Fun.(*ast.Ident)
	return ok && id.Name == "len"
}

func isEmptyString(e ast.Expr) bool {
	l, ok := e.(*ast.BasicLit)
	return ok && l.Value == `""`
}

func TestListenWarning(t *testing.T) {
	host, _, err := net.SplitHostPort(config.Default().API.Listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		t.Errorf("default api.listen %q is not loopback", config.Default().API.Listen)
	}
	// Loopback: no warning.
	quiet := newFixture(t, "", nil)
	quiet.mustStart()
	if strings.Contains(quiet.output(), "not loopback") {
		t.Errorf("a loopback api.listen was warned about:\n%s", quiet.infoLog())
	}
	quiet.stop()

	f := newFixture(t, "", func(c *config.Config) { c.API.Listen = "0.0.0.0:0" })
	f.mustStart()
	var line string
	for _, l := range strings.Split(f.output(), "\n") {
		if strings.Contains(l, "not loopback") {
			line = l
		}
	}
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "0.0.0.0:0") {
		t.Errorf("no warning line about api.listen 0.0.0.0:0 in the log:\n%s", f.infoLog())
	}
	st, err := f.status()
	if err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, w := range st.Warnings {
		warned = warned || strings.Contains(w, "not loopback")
	}
	if !warned {
		t.Errorf("status warnings %q do not say the API is reachable from the network", st.Warnings)
	}
	// The log file has it too, not only the console.
	if b, _ := os.ReadFile(filepath.Join(f.dataDir, "tposagent.log")); !strings.Contains(string(b), "not loopback") {
		t.Errorf("the log file lacks the warning")
	}
	t.Logf("RESULT listen-warning %s", strings.TrimSpace(line))
}

// tlsServer serves h over TLS with httptest's self-signed certificate,
// without logging the handshakes the agent refuses.
func tlsServer(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func writeCA(t *testing.T, path string, cert *x509.Certificate) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// otherCA is a self-signed CA that signed none of the servers.
func otherCA(t *testing.T) *x509.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "chaos other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTLSVerified(t *testing.T) {
	f := newFixture(t, "", nil)
	od, tp := tlsServer(t, f.oduyo), tlsServer(t, f.tposl)
	f.cfg.Oduyo.BaseURL = od.URL
	f.cfg.TPOSL.URL = tp.URL + tposltest.Path
	ctx := context.Background()
	enqueue := func(id string) {
		t.Helper()
		if _, err := f.api().Enqueue(ctx, "/v1/special-codes", []byte(`{"integration_id":"`+id+`","code":"Ş-`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(run string) {
		t.Helper()
		var st localapi.Status
		deadline := time.Now().Add(20 * time.Second)
		for {
			s, err := f.status()
			st = s
			if err == nil && strings.Contains(s.Outbox.LastError, "certificate") && strings.Contains(s.LastRegistrationError, "certificate") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no certificate error in status within 20 s: outbox %q, registration %q\n%s",
					run, st.Outbox.LastError, st.LastRegistrationError, f.infoLog())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(f.oduyo.Delivered()); n != 0 || f.tposl.Calls() != 0 {
			t.Errorf("%s: %d records and %d registrations got through an unverified certificate", run, n, f.tposl.Calls())
		}
		if st.Registered {
			t.Errorf("%s: registered through an unverified certificate", run)
		}
		t.Logf("%s: refused: outbox %q; registration %q", run, st.Outbox.LastError, st.LastRegistrationError)
	}

	// 1. Self-signed and not configured: refused, and the error says why.
	f.writeConfig()
	f.mustStart()
	enqueue("tls-1")
	refused("no ca_file")
	f.stop()

	// 2. A CA file with another CA: still refused (no blanket trust).
	other := filepath.Join(f.dir, "other-ca.pem")
	writeCA(t, other, otherCA(t))
	f.cfg.Oduyo.CAFile, f.cfg.TPOSL.CAFile = other, other
	f.writeConfig()
	f.mustStart()
	refused("another CA")
	f.stop()

	// 3. The server's CA: accepted, and the log says an extra CA is trusted.
	odCA, tpCA := filepath.Join(f.dir, "oduyo-ca.pem"), filepath.Join(f.dir, "tposl-ca.pem")
	writeCA(t, odCA, od.Certificate())
	writeCA(t, tpCA, tp.Certificate())
	f.cfg.Oduyo.CAFile, f.cfg.TPOSL.CAFile = odCA, tpCA
	f.writeConfig()
	f.mustStart()
	enqueue("tls-2")
	f.waitDelivered([]string{"tls-1", "tls-2"}, 30*time.Second)
	testrig.WaitFor(t, "registration over TLS", 20*time.Second, func() bool {
		st, err := f.status()
		return err == nil && st.Registered
	})
	log := f.infoLog()
	for _, ca := range []string{odCA, tpCA} {
		found := false
		for _, l := range strings.Split(log, "\n") {
			found = found || strings.Contains(l, "trusting an extra CA") && strings.Contains(l, ca)
		}
		if !found {
			t.Errorf("no \"trusting an extra CA\" line for %s in the log:\n%s", ca, log)
		}
	}
	f.stop()

	// No code path turns verification off.
	for _, dir := range []string{"../../../agent", "../../../cmd", "../../../installer", "../../../device", "../../../outbox", "../../../internal"} {
		filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
				strings.Contains(path, "test"+string(filepath.Separator)) || strings.Contains(path, "proof") {
				return nil
			}
			if b, _ := os.ReadFile(path); strings.Contains(string(b), "InsecureSkipVerify") {
				t.Errorf("%s mentions InsecureSkipVerify", path)
			}
			return nil
		})
	}
	t.Logf("RESULT tls self-signed=refused other-ca=refused ca_file=accepted delivered=%d", len(f.oduyo.Delivered()))
}

// The fake servers are plain http.Handlers, so httptest can wrap them.
var (
	_ http.Handler = (*oduyotest.Server)(nil)
	_ http.Handler = (*tposltest.Server)(nil)
)
