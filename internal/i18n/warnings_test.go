package i18n_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/i18n"
)

// TestEveryWarningHasTurkish: each warning the config's checks can give,
// and each the agent adds to its status, has a Turkish form that keeps
// the values (keys, sizes, times) and is unchanged in English.
func TestEveryWarningHasTurkish(t *testing.T) {
	c := config.Default()
	c.TPOSL.URL, c.Oduyo.BaseURL = "", ""
	c.Device.Timeout = config.Duration{Duration: time.Second}
	c.Device.Port, c.Device.FiscalSerial = "none", ""
	c.NoFloors = true // the test-only override says so
	c.API.Token = "short"
	c.API.Listen = "0.0.0.0:8787"
	warnings := c.Warnings()
	c.TPOSL.URL, c.Oduyo.BaseURL = "http://10.0.0.5/tposl", "http://10.0.0.6"
	warnings = append(warnings, c.Warnings()...)
	if len(warnings) < 9 {
		t.Fatalf("the config gave only %d warnings: %q", len(warnings), warnings)
	}
	// The agent's own (agent/status.go), in the same words.
	warnings = append(warnings,
		fmt.Sprintf("records cannot be stored since %s (%d failed): %s", "2026-11-27T10:00:00Z", 3, "disk full"),
		fmt.Sprintf("the Ödüyo server asked to pause sending until %s (Retry-After)", "2026-11-27T11:00:00Z"),
		"outbox file /var/lib/tposagent/outbox.db was deleted while the agent ran; new records are refused until the agent is restarted",
		"outbox file C:\\data\\outbox.db was replaced by another file while the agent ran",
		fmt.Sprintf("a corrupt outbox file was moved aside to %s at %s", "/var/lib/tposagent/outbox.db.corrupt-x", "2026-11-27T10:00:00Z"),
		"the local API cannot listen on 127.0.0.1:8787 since 2026-11-27T11:00:00Z: another program holds the port (retrying every 5s; find it: ss -ltnp 'sport = :8787')",
		"the local API cannot listen on 0.0.0.0:8787 since 2026-11-27T11:00:00Z: listen tcp 0.0.0.0:8787: bind: permission denied (retrying every 5s)",
		"the local API port 127.0.0.1:8787 was taken from 2026-11-27T10:00:00Z to 2026-11-27T11:00:00Z: a POS that called then may have sent its token to another program (change api.token if in doubt)",
		"delivery results cannot be recorded: commit outbox batch: disk full (3 records held until it can be recorded)",
		"the outbox file was emptied or replaced while the agent was stopped: 600 records that were accepted are not in it",
		"the outbox file was emptied or replaced while the agent ran: 2 records that were accepted are not in it",
	)
	for _, w := range warnings {
		tr := i18n.TR.Warning(w)
		if tr == w {
			t.Errorf("no Turkish for %q", w)
		}
		if en := i18n.EN.Warning(w); en != w {
			t.Errorf("English changed: %q → %q", w, en)
		}
		for _, v := range []string{"0.0.0.0:8787", "30s", "2026-11-27T11:00:00Z", "disk full", "tposl.url", "oduyo.base_url", "/var/lib/tposagent/outbox.db"} {
			if strings.Contains(w, v) && !strings.Contains(tr, v) {
				t.Errorf("the Turkish form of %q lost %q: %q", w, v, tr)
			}
		}
	}
	if got := i18n.TR.Warning("something new"); got != "something new" {
		t.Errorf("an unknown warning became %q", got)
	}
}
