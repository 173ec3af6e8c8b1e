package till_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/till"
)

var agentBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := till.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// A stop as the service manager sends it (SIGTERM; on Windows the service
// control manager's Stop request to a temporary service) ends the agent
// cleanly: exit 0 and "tposagent stopped" in its output (on Windows its log
// file, a service having no stderr). A kill does not.
func TestStopIsTheServiceManagersStop(t *testing.T) {
	dir := t.TempDir()
	c := config.Default()
	c.DataDir = "data"
	c.Store = config.Store{TaxNumber: "1234567890", TaxOffice: "Kadıköy", CompanyName: "Örnek Gıda A.Ş.", PosNo: 1, PosType: 1}
	c.Device.Port, c.Device.FiscalSerial = "none", "JI20012345"
	c.API.Listen, c.API.Token = "127.0.0.1:0", "till-token-0123456789abcdef"
	tl, err := till.New(&c, till.Options{Binary: agentBin, ConfigPath: filepath.Join(dir, "config.toml")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tl.Kill)
	ctx := context.Background()
	if _, err := tl.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	d, err := tl.Stop(20 * time.Second)
	if err != nil {
		t.Fatalf("stop: %v (after %v)\n%s", err, d, tl.Output())
	}
	if !strings.Contains(tl.Output(), `msg="tposagent stopped"`) {
		t.Fatalf("no clean stop in the agent's output:\n%s", tl.Output())
	}
	t.Logf("RESULT till-stop took=%v", d.Round(time.Millisecond))

	if _, err := tl.Start(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	tl.Kill()
	if strings.Contains(tl.Output(), `msg="tposagent stopped"`) {
		t.Fatalf("a killed agent logged a clean stop:\n%s", tl.Output())
	}
	if got := len(tl.Outputs()); got != 2 {
		t.Fatalf("outputs of %d runs, want 2", got)
	}
}
