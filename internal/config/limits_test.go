package config_test

import (
	"testing"

	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/internal/config"
)

// TestStoreLimitsMatchTheClient: the [store] limits checked at start are
// the ones the TPOSL client enforces before sending.
func TestStoreLimitsMatchTheClient(t *testing.T) {
	client := map[string]tposl.Limit{}
	for _, l := range tposl.Limits() {
		client[l.Field] = l
	}
	for _, l := range config.StoreLimits {
		c, ok := client[l.Field]
		switch {
		case !ok:
			t.Errorf("store.%s: the client has no limit for %s", l.Key, l.Field)
		case c.Max != l.Max || c.Truncate:
			t.Errorf("store.%s: config limit %d, client limit %d (truncate %v)", l.Key, l.Max, c.Max, c.Truncate)
		}
	}
	if len(config.StoreLimits) == 0 {
		t.Fatal("no store limits")
	}
}
