package installer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig/perm"
	"github.com/tposagent/tposagent/internal/testrig/wine"
)

// full is a complete set of required values, with Turkish text.
func full(dataDir string) map[string]string {
	return map[string]string{
		"tposl.url":          "https://lisans.example.com/TPOSL",
		"tposl.username":     "mağaza12",
		"tposl.password":     "Şifre-TPOSL-s3cret",
		"oduyo.base_url":     "https://www.siteadi.com",
		"oduyo.api_key":      "APIKEY-s3cret-0123",
		"oduyo.username":     "kasa",
		"oduyo.password":     "oduyo-pw-s3cret",
		"store.tax_number":   "1234567890",
		"store.tax_office":   "Kadıköy",
		"store.company_name": "Örnek Gıda A.Ş.",
		"store.pos_no":       "3",
		"data_dir":           dataDir,
	}
}

var secrets = []string{"Şifre-TPOSL-s3cret", "APIKEY-s3cret-0123", "oduyo-pw-s3cret"}

func TestBootstrapFresh(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "etc", "tposagent", "config.toml")
	dataDir := filepath.Join(dir, "var", "lib", "tposagent")
	var logBuf bytes.Buffer
	res, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: full(dataDir), Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || !res.TokenGenerated || !res.Wrote {
		t.Fatalf("result %+v: want created, token generated, written", res)
	}
	// The agent's own loader accepts what we wrote.
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatalf("config.Load of the installed file: %v", err)
	}
	tok := c.API.Token.Reveal()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
		t.Fatalf("token %q is not 64 hex characters", tok)
	}
	if c.Store.CompanyName != "Örnek Gıda A.Ş." || c.Store.TaxOffice != "Kadıköy" || c.TPOSL.Username != "mağaza12" || c.Store.PosNo != 3 {
		t.Fatalf("values did not survive: %+v", c.Store)
	}
	if c.TPOSL.Password.Reveal() != "Şifre-TPOSL-s3cret" {
		t.Fatal("tposl password not written")
	}
	if res.DataDir != dataDir {
		t.Fatalf("DataDir %q, want %q", res.DataDir, dataDir)
	}
	// No temp files left beside the config: only it and the marker of a
	// directory the installer created.
	ents, _ := os.ReadDir(filepath.Dir(cfgPath))
	for _, e := range ents {
		if e.Name() != "config.toml" && e.Name() != CreatedMarker {
			t.Fatalf("config dir holds %s, want only config.toml and %s", e.Name(), CreatedMarker)
		}
	}
	for _, s := range append(secrets, tok) {
		if strings.Contains(logBuf.String(), s) {
			t.Fatalf("log leaked a secret: %s", logBuf.String())
		}
	}
	// Last: under wine, whose ACLs are discarded, these skip.
	perm.Want(t, cfgPath, 0o600)
	perm.Want(t, filepath.Dir(cfgPath), 0o700)
	perm.Want(t, dataDir, 0o700)
}

func TestBootstrapTokensDiffer(t *testing.T) {
	a, _ := NewToken(rand.Reader)
	b, _ := NewToken(rand.Reader)
	if a == b || len(a) != 2*TokenBytes {
		t.Fatalf("tokens %q %q", a, b)
	}
	if _, err := NewToken(strings.NewReader("short")); err == nil {
		t.Fatal("NewToken from a short reader did not fail")
	}
}

func TestBootstrapReinstallKeepsTokenAndData(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	dataDir := filepath.Join(dir, "data")
	if _, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: full(dataDir)}); err != nil {
		t.Fatal(err)
	}
	first, _ := config.Load(cfgPath)
	outbox := filepath.Join(dataDir, "outbox.db")
	if err := os.WriteFile(outbox, []byte("queued kasa updates"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A hand edit that the installer does not know of must survive too.
	raw, _ := os.ReadFile(cfgPath)
	raw = bytes.Replace(raw, []byte(`interval = "6h0m0s"`), []byte(`interval = "2h"`), 1)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	// Re-run with no values at all: nothing changes, nothing is asked.
	res, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Ask: func(f Field) (string, error) {
		t.Fatalf("asked for %s on a re-install with a complete config", f.Key)
		return "", nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Created || res.TokenGenerated || len(res.Changed) != 0 {
		t.Fatalf("re-install result %+v: want kept, no new token, no change", res)
	}
	if !wine.Running() { // under wine: skipped by the check at the end
		perm.Want(t, cfgPath, 0o600) // the hand edit left it 0644
	}

	// Re-run with one new value: only that key changes.
	res, err = Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: map[string]string{"tposl.url": "https://yeni.example.com/TPOSL"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Changed, ",") != "tposl.url" {
		t.Fatalf("changed %v, want [tposl.url]", res.Changed)
	}
	second, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if second.API.Token != first.API.Token {
		t.Fatal("re-install replaced the api token")
	}
	if second.TPOSL.URL != "https://yeni.example.com/TPOSL" || second.Oduyo.Password != first.Oduyo.Password || second.Store.CompanyName != "Örnek Gıda A.Ş." {
		t.Fatalf("merge lost values: %+v", second)
	}
	if second.TPOSL.Interval.String() != "2h0m0s" {
		t.Fatalf("hand-edited interval %s was not kept", second.TPOSL.Interval)
	}
	if b, err := os.ReadFile(outbox); err != nil || string(b) != "queued kasa updates" {
		t.Fatalf("data dir content changed: %q %v", b, err)
	}
	// An explicit token replaces it (a fleet that manages tokens).
	res, err = Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: map[string]string{"api.token": "fleet-token-0123456789abcdef"}})
	if err != nil || res.TokenGenerated || strings.Join(res.Changed, ",") != "api.token" {
		t.Fatalf("explicit token: %+v %v", res, err)
	}
	perm.Want(t, cfgPath, 0o600)
}

func TestBootstrapUnattendedMissing(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	set := full(filepath.Join(dir, "data"))
	delete(set, "tposl.url")
	delete(set, "oduyo.password")
	_, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: set})
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("err = %v, want ErrMissing", err)
	}
	msg := err.Error()
	for _, want := range []string{"--tposl-url", "TPOSAGENT_TPOSL_URL", "--oduyo-password", "TPOSAGENT_ODUYO_PASSWORD"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error is more than one line: %q", msg)
	}
	if _, err := os.Stat(cfgPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed install wrote the config")
	}
}

func TestBootstrapPrompts(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	set := full(filepath.Join(dir, "data"))
	delete(set, "tposl.url")
	delete(set, "oduyo.api_key")
	var out bytes.Buffer
	secretReads := 0
	p := &Prompter{
		In:  strings.NewReader("https://lisans.example.com/TPOSL\n"),
		Out: &out,
		ReadSecret: func() (string, error) {
			secretReads++
			return "prompted-key-s3cret", nil
		},
	}
	if _, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: set, Ask: p.Ask}); err != nil {
		t.Fatal(err)
	}
	if secretReads != 1 {
		t.Fatalf("secret read %d times, want 1 (the api key, without echo)", secretReads)
	}
	c, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if c.TPOSL.URL != "https://lisans.example.com/TPOSL" || c.Oduyo.APIKey.Reveal() != "prompted-key-s3cret" {
		t.Fatalf("prompted values not stored: %q", c.TPOSL.URL)
	}
	if strings.Contains(out.String(), "prompted-key-s3cret") {
		t.Fatal("prompt output shows the secret")
	}
	if !strings.Contains(out.String(), "tposl.url") {
		t.Fatalf("prompt does not name the key: %q", out.String())
	}

	// An empty answer is an error, not a silent empty value.
	delete(set, "oduyo.username")
	p = &Prompter{In: strings.NewReader("\n"), Out: io.Discard}
	_, err = Bootstrap(BootstrapOptions{ConfigPath: filepath.Join(dir, "b.toml"), Set: set, Ask: p.Ask})
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("empty answer: %v", err)
	}
}

func TestBootstrapBadValues(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		key  string
		val  string
		want string
	}{
		{"pos no", "store.pos_no", "üç", "--pos-no"},
		{"url scheme", "tposl.url", "ftp://lisans.example.com/x", "tposl.url"},
		{"plain http public", "oduyo.base_url", "http://www.siteadi.com", "oduyo.base_url"},
		{"listen", "api.listen", "8787", "api.listen"},
		{"tcp without a port", "device.port", "tcp://192.168.1.50", "device.port"},
		{"short token", "api.token", "short", "api.token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := full(filepath.Join(dir, "data"))
			set[c.key] = c.val
			p := filepath.Join(dir, c.name+".toml")
			_, err := Bootstrap(BootstrapOptions{ConfigPath: p, Set: set})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one naming %s", err, c.want)
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Fatalf("error leaks a secret: %v", err)
				}
			}
			if _, err := os.Stat(p); err == nil {
				t.Fatal("config written despite the error")
			}
		})
	}
	if _, err := Bootstrap(BootstrapOptions{ConfigPath: filepath.Join(dir, "x.toml"), Set: map[string]string{"no.such": "1"}}); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestBootstrapKeepsBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.toml")
	broken := []byte("[tposl]\nurll = \"typo\"\n")
	if err := os.WriteFile(cfgPath, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: full(filepath.Join(dir, "data"))})
	if err == nil || !strings.Contains(err.Error(), "tposl.urll") {
		t.Fatalf("err = %v, want one naming the bad key", err)
	}
	if b, _ := os.ReadFile(cfgPath); !bytes.Equal(b, broken) {
		t.Fatal("a broken config was overwritten")
	}
}

func TestBootstrapDryRun(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "etc", "config.toml")
	res, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: full(filepath.Join(dir, "data")), DryRun: true})
	if err != nil || !res.Created || res.Wrote {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc")); err == nil {
		t.Fatal("dry run created the config dir")
	}
}

func TestBootstrapRelativeDataDir(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "conf", "config.toml")
	set := full("data")
	res, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: set})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "conf", "data"); res.DataDir != want {
		t.Fatalf("data dir %q, want %q (relative to the config file, not the working directory)", res.DataDir, want)
	}
	if _, err := os.Stat(res.DataDir); err != nil {
		t.Fatal(err)
	}
}

func TestPurge(t *testing.T) {
	if _, err := Purge("", "relative/dir", ""); err == nil {
		t.Error("Purge of a relative data dir accepted")
	}
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "etc")
	cfgPath := filepath.Join(cfgDir, "config.toml")
	dataDir := filepath.Join(dir, "data")
	if _, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: full(dataDir)}); err != nil {
		t.Fatal(err)
	}
	agentFiles := []string{"outbox.db", "outbox.db.compact", "outbox.db.corrupt-20260101T000000Z", "license.json", "device.json",
		"api.addr", "tposagent.log", "tposagent.log.1", "tposagent.log.12", ".license.json.tmp-123"}
	for _, f := range agentFiles {
		if err := os.WriteFile(filepath.Join(dataDir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Purge(cfgPath, dataDir, filepath.Join(dataDir, "tposagent.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cfgPath, cfgDir, dataDir} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after purge (result %+v)", p, res)
		}
	}
	if len(res.Kept) != 0 {
		t.Errorf("kept %v", res.Kept)
	}
}

// TestPurgeKeepsWhatItDidNotMake: install refuses a data dir that holds
// files it did not make (data_dir = "/var/lib" or D:\TPOS\data); and in a
// directory the installer made, where someone put a file of their own, the
// agent's files go and that file and the directory stay.
func TestPurgeKeepsWhatItDidNotMake(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, "lib") // stands for /var/lib
	foreign := []string{filepath.Join(lib, "dpkg", "status"), filepath.Join(lib, "notes.txt"), filepath.Join(lib, "outbox.db.bak")}
	for _, f := range foreign {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("not the agent's"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "etc", "config.toml")
	if _, err := Bootstrap(BootstrapOptions{ConfigPath: cfgPath, Set: full(lib)}); err == nil || !strings.Contains(err.Error(), "holds files tposagent did not create (dpkg, notes.txt, outbox.db.bak)") {
		t.Fatalf("install into a directory of other files: %v, want a refusal naming them", err)
	}
	if _, err := os.Stat(filepath.Join(lib, CreatedMarker)); err == nil {
		t.Fatal("bootstrap marked a directory it did not create")
	}

	// A directory the installer made, where someone put a file of their
	// own: the agent's files go, the directory and that file stay.
	own := filepath.Join(dir, "own")
	cfg2 := filepath.Join(dir, "etc2", "config.toml")
	if _, err := Bootstrap(BootstrapOptions{ConfigPath: cfg2, Set: full(own)}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"outbox.db", "yedek.zip"} {
		if err := os.WriteFile(filepath.Join(own, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Purge(cfg2, own, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(own, "yedek.zip")); err != nil {
		t.Errorf("purge removed a file the agent did not make: %v", err)
	}
	if _, err := os.Stat(filepath.Join(own, "outbox.db")); !errors.Is(err, os.ErrNotExist) {
		t.Error("purge kept the outbox")
	}
	if len(res.Kept) != 1 || !strings.Contains(res.Kept[0], "yedek.zip") {
		t.Errorf("kept %q, want the data dir with yedek.zip named", res.Kept)
	}
}

func TestAgentFile(t *testing.T) {
	for _, n := range []string{"outbox.db", "outbox.db.corrupt-20260101T000000Z-2", "tposagent.log.7", ".device.json.tmp-9", CreatedMarker} {
		if !AgentFile(n) {
			t.Errorf("AgentFile(%q) = false", n)
		}
	}
	for _, n := range []string{"outbox.db.bak", "tposagent.log.old", "dpkg", "license.json~", "x/outbox.db", ".bashrc"} {
		if AgentFile(n) {
			t.Errorf("AgentFile(%q) = true", n)
		}
	}
}

func TestFieldsEnvNames(t *testing.T) {
	seenFlag := map[string]bool{}
	for _, f := range Fields() {
		if seenFlag[f.Flag] {
			t.Errorf("flag --%s twice", f.Flag)
		}
		seenFlag[f.Flag] = true
		if !strings.HasPrefix(f.Env, "TPOSAGENT_") {
			t.Errorf("%s: env %q", f.Key, f.Env)
		}
	}
	// The installer reads the same variables as the agent where both exist.
	for _, o := range config.EnvOverrides {
		if f, ok := FieldByKey(o.Key); ok && f.Env != o.Name {
			t.Errorf("%s: installer reads %s, agent reads %s", o.Key, f.Env, o.Name)
		}
	}
}

// FuzzBootstrapValues feeds outside text (flags, environment, prompts) into
// the config: either a clear error, or every value comes back unchanged
// from the file that would be written.
func FuzzBootstrapValues(f *testing.F) {
	f.Add("Örnek Gıda A.Ş.", "Kadıköy", "mağaza12", "p\"a\\ss\nword")
	f.Add("\xff\xfe", "tab\there", "", "ünïcödé ğüşıöç ĞÜŞİÖÇ")
	f.Add("'''", "\"\"\"", "#not a comment", "x = 1\n[tposl]")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, company, office, user, password string) {
		set := full(filepath.Join(dir, "data"))
		set["store.company_name"] = company
		set["store.tax_office"] = office
		if user != "" {
			set["tposl.username"] = user
		}
		if password != "" {
			set["oduyo.password"] = password
		}
		res, err := Bootstrap(BootstrapOptions{ConfigPath: filepath.Join(dir, "config.toml"), Set: set, DryRun: true})
		if err != nil {
			if len(password) >= 16 && strings.Contains(err.Error(), password) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		c := res.Config
		if c.Store.CompanyName != company || c.Store.TaxOffice != office || (user != "" && c.TPOSL.Username != user) || (password != "" && c.Oduyo.Password.Reveal() != password) {
			t.Fatalf("values changed on the way: %q %q %q", c.Store.CompanyName, c.Store.TaxOffice, c.TPOSL.Username)
		}
	})
}

// TestBootstrapPortNoneWithoutSerial: device.port = "none" without a
// fiscal serial is accepted (the POS reports the identity later) with a
// warning that says so.
func TestBootstrapPortNoneWithoutSerial(t *testing.T) {
	dir := t.TempDir()
	set := full(filepath.Join(dir, "data"))
	set["device.port"] = "none"
	res, err := Bootstrap(BootstrapOptions{ConfigPath: filepath.Join(dir, "config.toml"), Set: set, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range res.Config.Warnings() {
		found = found || strings.Contains(w, "device.fiscal_serial")
	}
	if !found {
		t.Errorf("no warning about the missing fiscal serial: %q", res.Config.Warnings())
	}
}
