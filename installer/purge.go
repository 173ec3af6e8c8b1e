package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Purge removes what Bootstrap created: the config file (and its directory
// when that is then empty) and the data directory with its contents. It
// refuses directories that cannot be the agent's own (a filesystem root, a
// top-level directory such as /var, the user's home).
func Purge(configPath, dataDir string) error {
	if dataDir != "" {
		if err := checkPurgeDir(dataDir); err != nil {
			return fmt.Errorf("purge data dir: %w", err)
		}
		if err := os.RemoveAll(dataDir); err != nil {
			return fmt.Errorf("purge data dir: %w", err)
		}
	}
	if configPath != "" {
		if err := os.Remove(configPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("purge config: %w", err)
		}
		// Only when empty: it may be shared.
		_ = os.Remove(filepath.Dir(configPath))
	}
	return nil
}

func checkPurgeDir(dir string) error {
	clean := filepath.Clean(dir)
	if !filepath.IsAbs(clean) {
		return fmt.Errorf("%q is not absolute", dir)
	}
	vol := filepath.VolumeName(clean)
	rest := strings.Trim(strings.TrimPrefix(clean, vol), `/\`)
	if rest == "" || !strings.ContainsAny(rest, `/\`) {
		return fmt.Errorf("refusing to delete %q: not a dedicated directory", dir)
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.Clean(home) == clean {
		return fmt.Errorf("refusing to delete %q: it is a home directory", dir)
	}
	return nil
}
