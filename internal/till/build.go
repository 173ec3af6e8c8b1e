package till

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// MainPackage is the import path of the agent's main package.
const MainPackage = "github.com/tposagent/tposagent/cmd/tposagent"

// BinaryEnv names a prebuilt tposagent binary for the tests to use instead
// of building one (where no Go toolchain runs, e.g. a Windows test binary
// under wine, or to test a release build).
const BinaryEnv = "TPOSAGENT_TEST_BINARY"

// Build returns the agent binary for subprocess tests and a cleanup: the
// one BinaryEnv names, else one compiled from the module's source into a
// new temporary directory with the go command on PATH. It is meant for
// TestMain.
func Build() (path string, cleanup func(), err error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", nil, fmt.Errorf("%s: %w", BinaryEnv, err)
		}
		return p, func() {}, nil
	}
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
		return "", nil, fmt.Errorf("build tposagent (set %s to use a prebuilt one): %v\n%s", BinaryEnv, err, out)
	}
	return path, cleanup, nil
}
