package installer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPurgeWithoutManifestKeepsForeignConfig: without a
// manifest, the file given with --config is removed only when it is the
// agent's. A reviewer's empty file (an empty file parses as a config of
// defaults), a TOML file of another program and a config of the agent
// that names another data dir are kept, each with the reason; the old
// code deleted every one of them.
func TestPurgeWithoutManifestKeepsForeignConfig(t *testing.T) {
	s := newSandbox(t)
	data := s.p("var/lib/tposagent")
	writeFiles(t, "x", filepath.Join(data, CreatedMarker), filepath.Join(data, "outbox.db")) // an older install: no manifest
	cases := map[string]struct{ content, why string }{
		"tmp/rv/other/empty.toml":   {"", "names no data_dir"},
		"etc/otherpos/config.toml":  {"[printer]\nport = \"COM3\"\n", "is not a tposagent config"},
		"etc/tposagent2/agent.toml": {"data_dir = \"/srv/elsewhere\"\n", "is not the data dir purged"},
	}
	for rel, c := range cases {
		cfg := s.p(rel)
		writeFiles(t, c.content, cfg)
		res, err := Purge(cfg, data, "")
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if _, err := os.Stat(cfg); err != nil {
			t.Errorf("%s: purge without a manifest removed a config that is not the agent's: %v (removed %q)", rel, err, res.Removed)
		}
		kept := strings.Join(res.Kept, "\n")
		if !strings.Contains(kept, cfg+" (no manifest in the data dir, and ") || !strings.Contains(kept, c.why) {
			t.Errorf("%s: kept %q, want the file named with %q", rel, res.Kept, c.why)
		}
		writeFiles(t, "x", filepath.Join(data, CreatedMarker), filepath.Join(data, "outbox.db"))
	}
}

// TestPurgeWithoutManifestRemovesOwnConfig: a config of the agent that
// names the data dir purged (absolute, or relative to the config's
// directory) goes, as before.
func TestPurgeWithoutManifestRemovesOwnConfig(t *testing.T) {
	s := newSandbox(t)
	for i, dataDir := range []string{"DATA", "../../var/lib/tposagent"} {
		data := s.p("var/lib/tposagent")
		writeFiles(t, "x", filepath.Join(data, CreatedMarker), filepath.Join(data, "outbox.db"))
		if dataDir == "DATA" {
			dataDir = filepath.ToSlash(data)
		}
		cfg := s.p("etc/tposagent/config.toml")
		writeFiles(t, "data_dir = \""+dataDir+"\"\n", cfg)
		res, err := Purge(cfg, data, "")
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("case %d: the agent's config naming the data dir is still there (kept %q)", i, res.Kept)
		}
	}
}
