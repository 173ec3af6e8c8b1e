// Package agenttest helps tests that run the real tposagent binary as a
// subprocess (crash, power-cut and end-to-end tests): it builds the binary
// once per test binary, from the module's own source.
package agenttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// MainPackage is the import path of the agent's main package.
const MainPackage = "github.com/tposagent/tposagent/cmd/tposagent"

// Build compiles the agent into a new temporary directory and returns the
// binary's path and a cleanup that removes the directory. It is meant for
// TestMain; the build uses the go command on PATH and the module of the
// working directory.
func Build() (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "tposagent-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("build tposagent: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "tposagent")
	if runtime.GOOS == "windows" {
		path += ".exe"
	}
	out, err := exec.Command("go", "build", "-o", path, MainPackage).CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build tposagent: %v\n%s", err, out)
	}
	return path, cleanup, nil
}
