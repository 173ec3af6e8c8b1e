package chaos

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/testrig"
)

// TestStopWithRequestsInFlight: the agent is stopped (SIGINT; the service
// manager's stop on Windows) while a record is being sent to an Ödüyo that
// does not answer, a registration waits on a TPOSL that does not answer,
// and a POS request is open on the local API. The process exits, cleanly,
// within 5 s, and the record is still there after a restart.
func TestStopWithRequestsInFlight(t *testing.T) {
	const budget = 5 * time.Second
	f := newFixture(t, "", nil)
	f.oduyo.FailAlways(oduyotest.Fault{Delay: time.Hour})
	if err := f.tposl.SetFault(tposltest.SlowFault(time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.mustStart()
	ctx := context.Background()
	if _, err := f.api().Enqueue(ctx, "/v1/special-codes", []byte(`{"integration_id":"stop-1","code":"DURDUR-Ş"}`)); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "a send and a registration in flight", 15*time.Second, func() bool {
		st, err := f.status()
		return err == nil && st.Outbox.InFlight == 1 && f.oduyo.Requests() > 0 && f.tposl.Calls() > 0
	})
	// A POS request that has sent its headers but not its body: the
	// handler is waiting on it.
	pr, pw := io.Pipe()
	posDone := make(chan struct{})
	go func() {
		defer close(posDone)
		req, _ := http.NewRequest("POST", f.api().BaseURL+"/v1/kasa", pr)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		req.ContentLength = 100
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write([]byte(`{"integration_id":`))
	testrig.WaitFor(t, "the POS request in the handler", 5*time.Second, func() bool {
		st, err := f.status()
		return err == nil && st.API != nil && st.API.Open >= 2
	})

	took, err := f.Stop(10 * time.Second)
	if err != nil {
		t.Errorf("agent stop: %v", err)
	}
	pw.Close()
	<-posDone
	if took > budget {
		t.Errorf("the agent took %v to stop with requests in flight, want ≤ %v", took.Round(time.Millisecond), budget)
	}
	out := f.output()
	if !strings.Contains(out, "tposagent stopped") {
		t.Errorf("no clean stop in the log:\n%s", f.infoLog())
	}

	// Nothing was lost: the record is still pending after a restart.
	f.oduyo.ClearFaults()
	f.mustStart()
	f.waitDelivered([]string{"stop-1"}, 30*time.Second)
	f.stop()
	delivered := 0
	for _, d := range f.oduyo.Delivered() {
		if d.IntegrationID == "stop-1" {
			delivered++
		}
	}
	t.Logf("RESULT stop-in-flight took_ms=%d budget_ms=%d delivered_after_restart=%d", took.Milliseconds(), budget.Milliseconds(), delivered)
}
