//go:build linux

package installer

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPrepareServiceAccess hands the agent's files to the service user: a
// data dir install created (with what a root-run agent left in it) becomes
// the user's, the config its group's; a data dir that was there before is
// not taken over, only the agent's files in it. The user is faked (no user
// is added to this machine); chown needs root.
func TestPrepareServiceAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	const uid, gid = 54321, 54322
	old := serviceUser
	serviceUser = func(name, group string) (int, int, error) { return uid, gid, nil }
	t.Cleanup(func() { serviceUser = old })
	owner := func(p string) (int, int) {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return int(st.Uid), int(st.Gid)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "etc", "config.toml")
	data := filepath.Join(dir, "data")
	if _, err := Bootstrap(BootstrapOptions{ConfigPath: cfg, Set: full(data)}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"outbox.db", "license.json", "tposagent.log"} {
		if err := os.WriteFile(filepath.Join(data, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w, err := prepareServiceAccess(Spec{ConfigPath: cfg, DataDir: data, LogFile: filepath.Join(data, "tposagent.log")})
	if err != nil || len(w) != 0 {
		t.Fatalf("prepare: %v, warnings %v", err, w)
	}
	for _, p := range []string{data, filepath.Join(data, "outbox.db"), filepath.Join(data, "tposagent.log")} {
		if u, g := owner(p); u != uid || g != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", p, u, g, uid, gid)
		}
	}
	if u, g := owner(cfg); u != 0 || g != gid {
		t.Errorf("config owned by %d:%d, want 0:%d", u, g, gid)
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o640 {
		t.Errorf("config mode %o, want 640", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(cfg)); fi.Mode().Perm() != 0o750 {
		t.Errorf("config dir mode %o, want 750 (it was created by install)", fi.Mode().Perm())
	}

	// data_dir = "/var/lib": not the agent's.
	lib := filepath.Join(dir, "lib")
	if err := os.MkdirAll(filepath.Join(lib, "dpkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"outbox.db", "dpkg/status"} {
		if err := os.WriteFile(filepath.Join(lib, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err = prepareServiceAccess(Spec{ConfigPath: cfg, DataDir: lib})
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || !strings.Contains(w[0], lib) || !strings.Contains(w[0], ServiceUser) {
		t.Errorf("warnings %q, want one naming %s and the user", w, lib)
	}
	for _, p := range []string{lib, filepath.Join(lib, "dpkg"), filepath.Join(lib, "dpkg/status")} {
		if u, g := owner(p); u != 0 || g != 0 {
			t.Errorf("%s taken over: owned by %d:%d", p, u, g)
		}
	}
	if u, _ := owner(filepath.Join(lib, "outbox.db")); u != uid {
		t.Errorf("the agent's outbox.db in a foreign dir is owned by %d, want %d", u, uid)
	}
}
