package device

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shirou/gopsutil/v4/host"
	"golang.org/x/text/encoding/charmap"
)

// HostTimeout bounds Host as a whole.
const HostTimeout = 2 * time.Second

// HostFacts are facts of the till PC for the registration.
type HostFacts struct {
	HostName        string    // PC_NAME; fallback os.Hostname
	OS              string    // e.g. "windows", "linux"; fallback runtime.GOOS
	Platform        string    // e.g. "Microsoft Windows 10 Pro", "ubuntu"; "" when unknown
	PlatformVersion string    // e.g. "10.0.19045", "24.04"; "" when unknown
	KernelVersion   string    // "" when unknown
	HostID          string    // a stable machine id (SMBIOS UUID or machine-id); "" when unknown
	BootTime        time.Time // zero when unknown
}

// Host gathers the host facts through gopsutil. It returns within
// HostTimeout (or ctx's deadline, if sooner) whatever the OS does: when the
// lookup is late or fails, the facts fall back to os.Hostname and
// runtime.GOOS and the rest stays empty.
func Host(ctx context.Context) HostFacts {
	ctx, cancel := context.WithTimeout(ctx, HostTimeout)
	defer cancel()
	hn, _ := os.Hostname()
	facts := HostFacts{HostName: hn, OS: runtime.GOOS}

	ch := make(chan *host.InfoStat, 1) // buffered: a late lookup never blocks
	go func() {
		info, _ := host.InfoWithContext(ctx) // partial info is still useful
		ch <- info
	}()
	var info *host.InfoStat
	select {
	case info = <-ch:
	case <-ctx.Done():
	}
	if info == nil {
		return facts
	}
	if info.Hostname != "" {
		facts.HostName = info.Hostname
	}
	if info.OS != "" {
		facts.OS = info.OS
	}
	facts.Platform = info.Platform
	facts.PlatformVersion = info.PlatformVersion
	facts.KernelVersion = info.KernelVersion
	facts.HostID = info.HostID
	if info.BootTime > 0 {
		facts.BootTime = time.Unix(int64(info.BootTime), 0)
	}
	return facts
}

// Limits of NewestBackup's walk.
const (
	backupMaxEntries = 100000
	backupMaxDepth   = 8
)

// ErrWalkLimit reports that NewestBackup stopped at its entry limit; the
// time it returns with it is the newest among the entries it saw.
var ErrWalkLimit = errors.New("backup directory too large to scan completely")

// NewestBackup returns the newest regular file's modification time under
// dir (subdirectories up to 8 levels, at most 100000 entries, symbolic links
// not followed); zero and nil when there is no file or dir is "". A missing
// or unreadable dir is an error (errors.Is fs.ErrNotExist / fs.ErrPermission);
// unreadable subdirectories are skipped.
func NewestBackup(dir string) (time.Time, error) {
	if dir == "" {
		return time.Time{}, nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return time.Time{}, fmt.Errorf("find newest backup: %w", err)
	}
	if !fi.IsDir() {
		return time.Time{}, fmt.Errorf("find newest backup: %s is not a directory", dir)
	}
	var newest time.Time
	seen := 0
	root := filepath.Clean(dir)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		seen++
		if seen > backupMaxEntries {
			return ErrWalkLimit
		}
		if d.IsDir() {
			if path != root && strings.Count(path[len(root):], string(filepath.Separator)) > backupMaxDepth {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // gone meanwhile
		}
		if t := info.ModTime(); t.After(newest) {
			newest = t
		}
		return nil
	})
	if err != nil {
		return newest, fmt.Errorf("find newest backup in %s: %w", dir, err)
	}
	return newest, nil
}

// VersionFiles are the files TPOSVersion looks for in the TPOS install
// directory, in this order.
var VersionFiles = []string{"version.txt", "VERSION"}

// ErrNoVersion: no version file, or none with a version in it.
var ErrNoVersion = errors.New("no tpos version file")

// TPOSVersion reads the installed TPOS program's version and version
// sequence (TPOS_VERSIYON, TPOS_VERSIYON_SIRA) from the first of
// VersionFiles found in installDir. The file (UTF-8 with or without BOM, or
// Windows-1254) holds either key=value (or key: value) lines — keys, any
// case: version, versiyon, tpos_versiyon; seq, sira, sıra, versiyon_sira,
// tpos_versiyon_sira, build — or bare lines: the version, then the sequence
// (on the same line after a space, or on the next line). seq may be "".
func TPOSVersion(installDir string) (version, seq string, err error) {
	if installDir == "" {
		return "", "", fmt.Errorf("read tpos version: no install directory: %w", ErrNoVersion)
	}
	for _, name := range VersionFiles {
		path := filepath.Join(installDir, name)
		b, err := readSmall(path, 64<<10)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", "", fmt.Errorf("read tpos version: %w", err)
		}
		version, seq = parseVersion(b)
		if version == "" {
			return "", "", fmt.Errorf("read tpos version: %s holds no version: %w", path, ErrNoVersion)
		}
		return version, seq, nil
	}
	return "", "", fmt.Errorf("read tpos version: none of %s in %s: %w", strings.Join(VersionFiles, ", "), installDir, ErrNoVersion)
}

func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func parseVersion(b []byte) (version, seq string) {
	b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	if !utf8.Valid(b) {
		if d, err := charmap.Windows1254.NewDecoder().Bytes(b); err == nil {
			b = d
		}
	}
	var bare []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[") {
			continue
		}
		if k, v, ok := cutKey(line); ok {
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "version", "versiyon", "tpos_versiyon", "tpos_version":
				version = unquote(v)
			case "seq", "sira", "sıra", "versiyon_sira", "versiyon_sıra", "tpos_versiyon_sira", "tpos_version_seq", "build":
				seq = unquote(v)
			}
			continue
		}
		bare = append(bare, line)
	}
	if version == "" && len(bare) > 0 {
		f := strings.Fields(bare[0])
		version = f[0]
		if len(f) > 1 {
			seq = f[1]
		} else if len(bare) > 1 && seq == "" {
			seq = strings.Fields(bare[1])[0]
		}
	}
	return version, seq
}

func cutKey(line string) (k, v string, ok bool) {
	i := strings.IndexAny(line, "=:")
	if i <= 0 {
		return "", "", false
	}
	return line[:i], line[i+1:], true
}

func unquote(s string) string { return strings.Trim(strings.TrimSpace(s), `"'`) }
