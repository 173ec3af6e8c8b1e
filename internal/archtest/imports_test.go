package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/tposagent/tposagent"

// deps lists the non-test packages pkg links on Linux or on Windows (the
// union of both graphs), from `go list -deps`.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		// Under wine the test binary sees no Windows go.exe; the Linux run
		// checks both OSes' graphs.
		t.Skipf("no go command on PATH to list imports (under wine there is no Windows go.exe; the Linux run checks the Windows graph too): %v", err)
	}
	seen := map[string]bool{}
	var list []string
	for _, goos := range []string{"linux", "windows"} {
		cmd := exec.Command("go", "list", "-deps", "-json=ImportPath", mod+"/"+pkg)
		cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("GOOS=%s go list -deps %s: %v", goos, pkg, err)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var p struct{ ImportPath string }
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if !seen[p.ImportPath] {
				seen[p.ImportPath] = true
				list = append(list, p.ImportPath)
			}
		}
	}
	return list
}

// TestImportsFlowOneWay: cmd → {installer, agent}; agent → {agent/tposl,
// agent/oduyo, device, outbox}; installer imports nothing of agent; outbox,
// device and the two server clients import none of each other; localapi
// imports neither the outbox nor either server client (the licence value
// it serves is agent/license, which imports nothing of ours); nothing shipped
// links a test rig.
func TestImportsFlowOneWay(t *testing.T) {
	rigs := []string{"internal/testrig", "internal/proof", "internal/archtest", "outbox/outboxtest"}
	fakes := []string{"device/devicetest", "agent/tposl/tposltest", "agent/oduyo/oduyotest"}
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"installer", []string{"agent", "device", "outbox", "internal/till", "internal/demo"}},
		{"outbox", []string{"agent", "device", "installer", "cmd"}},
		{"device", []string{"agent", "outbox", "installer", "cmd"}},
		{"agent/tposl", []string{"agent/oduyo", "agent/localapi", "agent/records", "outbox", "device", "installer"}},
		{"agent/oduyo", []string{"agent/tposl", "agent/localapi", "outbox", "device", "installer"}},
		{"agent/records", []string{"agent/oduyo", "agent/tposl", "agent/localapi", "outbox", "device"}},
		{"agent/localapi", []string{"agent/oduyo", "agent/tposl", "outbox", "device", "installer"}},
		{"agent/license", []string{"agent/oduyo", "agent/tposl", "agent/localapi", "agent/records", "outbox", "device", "installer", "internal"}},
		{"internal/config", []string{"agent", "device", "outbox", "installer"}},
		{"agent", append([]string{"installer", "cmd", "internal/till", "internal/demo"}, fakes...)},
		// The shipped binary: the fakes only through the demo, no rig at all.
		{"cmd/tposagent", nil},
	}
	for _, r := range rules {
		t.Run(strings.ReplaceAll(r.pkg, "/", "_"), func(t *testing.T) {
			forbidden := append(append([]string{}, r.forbidden...), rigs...)
			for _, d := range deps(t, r.pkg) {
				if d == "testing" {
					t.Errorf("%s links the testing package", r.pkg)
				}
				rel, ok := strings.CutPrefix(d, mod+"/")
				if !ok {
					continue
				}
				for _, f := range forbidden {
					// "agent" forbids agent and agent/..., but a package may
					// always import itself and its own subpackages.
					if (rel == f || strings.HasPrefix(rel, f+"/")) && !(rel == r.pkg || strings.HasPrefix(rel, r.pkg+"/")) {
						t.Errorf("%s imports %s (directly or through another package)", r.pkg, rel)
					}
				}
			}
		})
	}
}

// TestFakesOnlyThroughTheDemo: the fakes reach the shipped binary only
// through internal/demo: without it, cmd/tposagent's own imports would not
// pull them in.
func TestFakesOnlyThroughTheDemo(t *testing.T) {
	fakes := []string{"device/devicetest", "agent/tposl/tposltest", "agent/oduyo/oduyotest"}
	for _, pkg := range []string{"agent", "installer", "internal/till", "internal/config"} {
		for _, d := range deps(t, pkg) {
			for _, f := range fakes {
				if d == mod+"/"+f {
					t.Errorf("%s links the fake %s", pkg, f)
				}
			}
		}
	}
}
