package device_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
)

func TestHost(t *testing.T) {
	start := time.Now()
	h := device.Host(context.Background())
	if took := time.Since(start); took > device.HostTimeout+500*time.Millisecond {
		t.Fatalf("took %v", took)
	}
	if h.HostName == "" || h.OS == "" {
		t.Fatalf("facts %+v", h)
	}
	if runtime.GOOS == "linux" && (h.BootTime.IsZero() || h.BootTime.After(time.Now())) {
		t.Fatalf("boot time %v", h.BootTime)
	}
}

func TestHostCancelledContextFallsBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := device.Host(ctx)
	hn, _ := os.Hostname()
	if h.HostName != hn || h.OS == "" {
		t.Fatalf("facts %+v", h)
	}
}

func TestNewestBackup(t *testing.T) {
	dir := t.TempDir()
	if got, err := device.NewestBackup(dir); err != nil || !got.IsZero() {
		t.Fatalf("empty dir: %v, %v", got, err)
	}
	if got, err := device.NewestBackup(""); err != nil || !got.IsZero() {
		t.Fatalf("no dir: %v, %v", got, err)
	}
	base := time.Date(2026, 11, 20, 22, 0, 0, 0, time.UTC)
	write := func(rel string, mt time.Time) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("yedek"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	write("a.bak", base)
	write("2026/11/yedek_Kasım.bak", base.Add(48*time.Hour))
	write("old.bak", base.Add(-time.Hour))
	// A newer directory must not count, only files.
	if err := os.Chtimes(filepath.Join(dir, "2026"), base.Add(100*time.Hour), base.Add(100*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err := device.NewestBackup(dir)
	if err != nil || !got.Equal(base.Add(48*time.Hour)) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := device.NewestBackup(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestTPOSVersion(t *testing.T) {
	tests := []struct {
		name, file, content string
		version, seq        string
		err                 error
	}{
		{"keys", "version.txt", "\xEF\xBB\xBF# TPOS\nVERSIYON = 3.4.1\nVERSIYON_SIRA=412\n", "3.4.1", "412", nil},
		{"english keys", "VERSION", "version: \"2.0\"\nbuild: 7\n", "2.0", "7", nil},
		{"bare two lines", "version.txt", "3.4.1\r\n412\r\n", "3.4.1", "412", nil},
		{"bare one line", "VERSION", "3.4.1 412\n", "3.4.1", "412", nil},
		{"bare version only", "VERSION", "\n3.4.1\n", "3.4.1", "", nil},
		{"windows-1254 key", "version.txt", "S\xFDra=9\nversion=1.0\n", "1.0", "9", nil},
		{"empty", "version.txt", "\n# nothing\n", "", "", device.ErrNoVersion},
		{"no file", "", "", "", "", device.ErrNoVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.file != "" {
				if err := os.WriteFile(filepath.Join(dir, tt.file), []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			v, s, err := device.TPOSVersion(dir)
			if v != tt.version || s != tt.seq || !errors.Is(err, tt.err) {
				t.Fatalf("got %q %q %v, want %q %q %v", v, s, err, tt.version, tt.seq, tt.err)
			}
		})
	}
}
