package localapi_test

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The status page in a real browser: headless Chromium (Debian's chromium
// package) renders it in both languages; the numbers it shows match
// /v1/status, and a screenshot of each is kept for the CI artifacts.

// screenshotsEnv overrides where the screenshots go (default: dist/screenshots
// at the module root).
const screenshotsEnv = "TPOSAGENT_SCREENSHOTS"

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chromium runs the browser headless on url with extra arguments and
// returns its standard output.
func chromium(t *testing.T, bin, url string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-quic", "--no-proxy-server", "--disable-dev-shm-usage",
		"--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	args = append(append(args, extra...), url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(extra, " "), err, tail(stderr.String(), 2000))
	}
	return stdout.Bytes()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func screenshotDir(t *testing.T) string {
	if d := os.Getenv(screenshotsEnv); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "dist", "screenshots")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func TestStatusPageInChromium(t *testing.T) {
	bin := chromiumPath()
	if bin == "" {
		t.Skip("chromium not found on PATH (tried chromium, chromium-browser, google-chrome): install it with 'apt-get install chromium' to render the status page in a browser")
	}
	if testing.Short() {
		t.Skip("-short: the browser takes a few seconds per page")
	}
	srv := pageServer(t)
	out := screenshotDir(t)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		lang  string
		words []string
	}{
		{"tr", []string{`lang="tr"`, "Demo lisans: 20 gün kaldı", "Bekleyen kayıtlar", "Ödüyo 1 kaydı reddetti", "GMP3 modülü"}},
		{"en", []string{`lang="en"`, "Demo licence: 20 days left", "Records waiting", "1 refused by Ödüyo", "GMP3 module"}},
	} {
		t.Run(tt.lang, func(t *testing.T) {
			url := srv.URL + "/?lang=" + tt.lang
			// The DOM as the browser built it: the words (Turkish letters
			// intact) and the numbers of /v1/status.
			before := statusOf(t, srv)
			dom := string(chromium(t, bin, url, "--dump-dom"))
			after := statusOf(t, srv)
			for _, w := range tt.words {
				if !strings.Contains(dom, w) {
					t.Errorf("rendered page lacks %q", w)
				}
			}
			checkPageMatchesStatus(t, dom, before, after)

			shot := filepath.Join(out, "status-"+tt.lang+".png")
			os.Remove(shot)
			chromium(t, bin, url, "--screenshot="+shot, "--window-size=1000,820")
			f, err := os.Open(shot)
			if err != nil {
				t.Fatalf("no screenshot: %v", err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("screenshot %s: %v", shot, err)
			}
			// Not blank: the header band is coloured (demo: amber).
			r, g, b, _ := img.At(20, 20).RGBA()
			if b := img.Bounds(); b.Dx() != 1000 || b.Dy() != 820 {
				t.Errorf("screenshot is %v, want 1000x820", b)
			}
			if !(r>>8 > 0x90 && g>>8 > 0x50 && g>>8 < 0x80 && b>>8 < 0x20) {
				t.Errorf("screenshot pixel (20,20) = #%02x%02x%02x, want the amber of a demo licence (#a86400)", r>>8, g>>8, b>>8)
			}
			t.Logf("screenshot %s (%d bytes of DOM)", shot, len(dom))
		})
	}
}
