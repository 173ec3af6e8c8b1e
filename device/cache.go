package device

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/tposagent/tposagent/device/gmp3"
	"github.com/tposagent/tposagent/internal/atomicfile"
)

// CacheFile is the name of the cache file in Config.CacheDir.
const CacheFile = "device.json"

// maxCacheSize bounds what is read back from the cache file.
const maxCacheSize = 64 << 10

type cacheData struct {
	Identity Identity          `json:"identity"`
	AutoPort string            `json:"auto_port,omitempty"` // the port auto-detection found last
	Dialects map[string]string `json:"dialects,omitempty"`  // port → the dialect that answered there
}

// Cached is the identity of the last good read, remembered on disk
// (Source cache), or the zero Identity.
func (r *Reader) Cached() Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.loadCache().Identity
	if id.FiscalSerial != "" {
		id.Source = SourceCache
	}
	return id
}

// loadCache returns what the cache holds; zero values when there is none
// or it cannot be read.
func (r *Reader) loadCache() cacheData {
	if r.cfg.CacheDir == "" {
		return cacheData{}
	}
	c, err := readCache(filepath.Join(r.cfg.CacheDir, CacheFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("ignoring the device cache", "err", err)
		}
		return cacheData{}
	}
	if c.Identity.FiscalSerial != "" && !gmp3.ValidFiscalID(c.Identity.FiscalSerial) {
		r.log.Warn("ignoring a cached fiscal serial without a fiscal-id shape", "fiscal_serial", c.Identity.FiscalSerial)
		c.Identity = Identity{}
	}
	return c
}

// CachedIdentity is the identity of the last good read kept in dir's
// cache (Source cache), or the zero Identity; it reads without a Reader
// and writes nothing (for a command that must not touch the agent's
// files).
func CachedIdentity(dir string) Identity {
	c, err := readCache(filepath.Join(dir, CacheFile))
	if err != nil || !gmp3.ValidFiscalID(c.Identity.FiscalSerial) {
		return Identity{}
	}
	id := c.Identity
	id.Source = SourceCache
	return id
}

func readCache(path string) (cacheData, error) {
	var c cacheData
	f, err := atomicfile.Open(path)
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
		return cacheData{}, fmt.Errorf("read device cache %s: %w", path, err)
	}
	return c, nil
}

// maxRememberedPorts bounds the port → dialect map.
const maxRememberedPorts = 32

// saveCache remembers id, its dialect with its port, and its port as the
// auto winner when auto found it.
func (r *Reader) saveCache(c cacheData, id Identity, auto bool) error {
	if r.cfg.CacheDir == "" {
		return nil
	}
	c.Identity = id
	if auto {
		c.AutoPort = id.Port
	}
	if c.Dialects == nil || len(c.Dialects) >= maxRememberedPorts {
		c.Dialects = map[string]string{}
	}
	c.Dialects[id.Port] = id.Protocol
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("write device cache: %w", err)
	}
	return atomicfile.Write(filepath.Join(r.cfg.CacheDir, CacheFile), append(b, '\n'), 0o600)
}
