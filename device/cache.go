package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tposagent/tposagent/internal/atomicfile"
)

// CacheFile is the name of the cache file in Config.CacheDir.
const CacheFile = "device.json"

// maxCacheSize bounds what is read back from the cache file.
const maxCacheSize = 64 << 10

type cacheData struct {
	Identity Identity `json:"identity"`
	AutoPort string   `json:"auto_port,omitempty"` // the port auto-detection found last
}

// loadCache returns the cached identity (Source cache) and the remembered
// auto port; zero values when there is none or it cannot be read.
func (r *Reader) loadCache() (Identity, string) {
	if r.cfg.CacheDir == "" {
		return Identity{}, ""
	}
	c, err := readCache(filepath.Join(r.cfg.CacheDir, CacheFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("ignoring the device cache", "err", err)
		}
		return Identity{}, ""
	}
	id := c.Identity
	if id.FiscalSerial != "" {
		id.Source = SourceCache
	}
	return id, c.AutoPort
}

func readCache(path string) (cacheData, error) {
	var c cacheData
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("read device cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCacheSize+1))
	if err != nil {
		return c, fmt.Errorf("read device cache %s: %w", path, err)
	}
	if len(b) > maxCacheSize {
		return c, fmt.Errorf("read device cache %s: larger than %d bytes", path, maxCacheSize)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("read device cache %s: %w", path, err)
	}
	return c, nil
}

// saveCache remembers id, and its port as the auto winner when auto found it.
func (r *Reader) saveCache(id Identity, auto bool) error {
	if r.cfg.CacheDir == "" {
		return nil
	}
	path := filepath.Join(r.cfg.CacheDir, CacheFile)
	c := cacheData{Identity: id}
	if auto {
		c.AutoPort = id.Port
	} else if old, err := readCache(path); err == nil {
		c.AutoPort = old.AutoPort
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("write device cache: %w", err)
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}
