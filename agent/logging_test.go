package agent

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/internal/testrig/perm"
)

func TestRedactorScrubsEveryPath(t *testing.T) {
	var buf bytes.Buffer
	secrets := []string{"pw-Şifre-123", "apikey-777", "tok"}
	log := slog.New(NewRedactor(slog.NewTextHandler(&buf, nil), secrets))
	log.With("url", "https://x/?k=apikey-777").WithGroup("g").Info("login with pw-Şifre-123 failed",
		"err", errors.New("server said: bad password pw-Şifre-123"),
		"stringer", stringer("apikey-777"),
		"any", map[string]string{"p": "pw-Şifre-123"},
		slog.Group("nested", "k", "apikey-777"))
	out := buf.String()
	for _, s := range secrets[:2] {
		if strings.Contains(out, s) {
			t.Errorf("secret %q leaked: %s", s, out)
		}
	}
	if strings.Count(out, "[redacted]") < 6 {
		t.Errorf("expected six redactions: %s", out)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestRotatingFile(t *testing.T) {
	dataDir := t.TempDir()
	if err := perm.RestrictDir(dataDir); err != nil { // as install does
		t.Fatal(err)
	}
	path := filepath.Join(dataDir, "logs", "a.log")
	f, err := OpenRotatingFile(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		fmt.Fprintf(f, "line %02d %s\n", i, strings.Repeat("x", 30)) // 41 bytes
	}
	f.Close()
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Size() > 100 {
			t.Errorf("%s is %d bytes, over the limit", p, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("more backups than configured")
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "line 09") {
		t.Errorf("newest line not in the current file: %q", b)
	}
	// Rotation keeps every file closed to others (Windows: inherited from
	// the data dir). Last: under wine, whose ACLs are discarded, it skips.
	for _, p := range []string{path, path + ".1", path + ".2"} {
		perm.Want(t, p, 0o600)
	}
}
