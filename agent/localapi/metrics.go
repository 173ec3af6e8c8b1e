package localapi

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/tposagent/tposagent/agent/license"
)

// licenseStates are exported as one gauge each, 1 for the current state.
var licenseStates = []license.State{
	license.Licensed, license.Demo, license.Expired, license.Inactive,
	license.Mismatch, license.Unregistered, license.StateUnknown,
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
	writeBookMetrics(w, s.Outbox.Bookkeeping)
	if s.LastFlush != nil {
		gauge("tposagent_outbox_last_success_seconds", "Time of the last delivery, Unix seconds.", float64(s.LastFlush.Unix()))
	}
	writeHealthMetrics(w, s)
}

// writeHealthMetrics says what fails: enqueues that cannot be stored, a
// server's pause, the device, the local API's connection limit. A text
// (an error) travels as the "error" label of a gauge that is 1.
func writeHealthMetrics(w io.Writer, s Status) {
	gauge := func(name, help string, v float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %g\n", name, help, name, name, v)
	}
	unix := func(t *time.Time) float64 {
		if t == nil {
			return 0
		}
		return float64(t.Unix())
	}
	info := func(name, help, text string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
		if text != "" {
			fmt.Fprintf(w, "%s{error=\"%s\"} 1\n", name, labelValue(text))
		}
	}
	e := s.Outbox.Enqueue
	fmt.Fprintf(w, "# HELP tposagent_enqueue_failures_total Records the agent could not store (answered 503).\n# TYPE tposagent_enqueue_failures_total counter\ntposagent_enqueue_failures_total %d\n", e.Failures)
	gauge("tposagent_enqueue_failing_since_seconds", "While enqueues fail: the first failure after the last success, Unix seconds; 0 when they work.", unix(e.FailingSince))
	info("tposagent_enqueue_last_error_info", "The last enqueue failure, as the error label.", e.LastError)
	paused := s.Outbox.PausedUntil
	if paused != nil && !paused.After(time.Now()) {
		paused = nil
	}
	gauge("tposagent_outbox_paused_until_seconds", "Sending is paused by a server's Retry-After until this time, Unix seconds; 0 when not paused.", unix(paused))
	info("tposagent_outbox_last_error_info", "The last send failure, as the error label.", s.Outbox.LastError)
	ok := 1.0
	if s.Device.Error != "" {
		ok = 0
	}
	gauge("tposagent_device_ok", "1 when the last read of the cash register succeeded.", ok)
	gauge("tposagent_device_error_since_seconds", "Since when the cash register cannot be read, Unix seconds; 0 when it can.", unix(s.Device.ErrorSince))
	info("tposagent_device_error_info", "Why the cash register cannot be read, as the error label.", s.Device.Error)
	if s.API != nil {
		gauge("tposagent_api_connections", "Open connections to the local API.", float64(s.API.Open))
		fmt.Fprintf(w, "# HELP tposagent_api_connections_evicted_total Connections closed before a whole request to make room for a new one.\n# TYPE tposagent_api_connections_evicted_total counter\ntposagent_api_connections_evicted_total %d\n", s.API.Evicted)
		fmt.Fprintf(w, "# HELP tposagent_api_connections_refused_total New connections refused with 503: no connection could make room.\n# TYPE tposagent_api_connections_refused_total counter\ntposagent_api_connections_refused_total %d\n", s.API.Refused)
		fmt.Fprintf(w, "# HELP tposagent_api_slow_bodies_total Connections closed because their request body arrived slower than the minimum rate.\n# TYPE tposagent_api_slow_bodies_total counter\ntposagent_api_slow_bodies_total %d\n", s.API.SlowBodies)
	}
}

// labelValue makes text a label value of the exposition format: one
// line, at most 200 bytes, backslash and quote escaped, no control bytes.
func labelValue(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 200 {
		text = strings.ToValidUTF8(text[:200], "") + "…"
	}
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, text)
	return labelEscaper.Replace(text)
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
