package localapi

import (
	"bufio"
	"fmt"
	"io"
	"net/http"

	"github.com/tposagent/tposagent/agent/tposl"
)

// licenseStates are exported as one gauge each, 1 for the current state.
var licenseStates = []tposl.State{
	tposl.Licensed, tposl.Demo, tposl.Expired, tposl.Inactive,
	tposl.Mismatch, tposl.Unregistered, tposl.StateUnknown,
}

func (h *handler) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	WriteMetrics(bw, h.cfg.Status())
	if h.cfg.Metrics != nil {
		h.cfg.Metrics(bw)
	}
	bw.Flush()
}

// WriteMetrics writes s in the Prometheus text exposition format.
func WriteMetrics(w io.Writer, s Status) {
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge("tposagent_up", "1 while the agent runs.", 1)
	gauge("tposagent_start_time_seconds", "Start time of the agent, Unix seconds.", float64(s.StartedAt.Unix()))
	gauge("tposagent_registered", "1 when the last TPOSL registration succeeded.", b2f(s.Registered))
	gauge("tposagent_online", "1 when the Ödüyo server was reachable at the last attempt.", b2f(s.Online))
	fmt.Fprintf(w, "# HELP tposagent_license_state The licence state (1 for the current one).\n# TYPE tposagent_license_state gauge\n")
	for _, st := range licenseStates {
		fmt.Fprintf(w, "tposagent_license_state{state=%q} %g\n", st, b2f(s.License.State == st))
	}
	gauge("tposagent_license_days_left", "Days left of a demo licence.", float64(s.License.DaysLeft))
	gauge("tposagent_gmp3_days_left", "Days left of the GMP3 module.", float64(s.License.GMP3.DaysLeft))
	gauge("tposagent_outbox_pending", "Records waiting to be sent.", float64(s.Outbox.Pending))
	gauge("tposagent_outbox_in_flight", "Records being sent.", float64(s.Outbox.InFlight))
	gauge("tposagent_outbox_dead", "Records in the dead-letter bucket.", float64(s.Outbox.Dead))
	gauge("tposagent_outbox_oldest_pending_age_seconds", "Age of the oldest pending record.", float64(s.Outbox.OldestPendingAgeS))
	gauge("tposagent_outbox_bytes", "Size of the outbox file.", float64(s.Outbox.Bytes))
	counter("tposagent_outbox_enqueued_total", "Records accepted.", s.Outbox.Enqueued)
	counter("tposagent_outbox_delivered_total", "Records delivered.", s.Outbox.Delivered)
	counter("tposagent_outbox_coalesced_total", "Kasa updates superseded by a newer one before sending.", s.Outbox.Coalesced)
	counter("tposagent_outbox_dead_lettered_total", "Records moved to the dead-letter bucket.", s.Outbox.DeadLettered)
	if s.LastFlush != nil {
		gauge("tposagent_outbox_last_success_seconds", "Time of the last delivery, Unix seconds.", float64(s.LastFlush.Unix()))
	}
}
