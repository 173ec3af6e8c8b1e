package agent

import (
	"fmt"
	"io"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/outbox"
)

// OutboxClosedWarning starts the status warning of an outbox file that is
// not open (doctor finds it by this; internal/i18n has its Turkish).
const OutboxClosedWarning = "records are refused until the outbox file opens"

// UndecidedWarning starts the status warning of records that wait for a
// lookup that cannot decide (doctor finds it by this).
const UndecidedWarning = "records wait for a lookup that cannot decide whether an earlier attempt delivered them"

// Status is a snapshot for the local API, the CLI and /metrics.
//
// Its text is safe to show (see safeText): no terminal controls, no
// configured secret a server echoed.
func (a *Agent) Status() (s localapi.Status) {
	defer func() { a.safeText(&s) }()
	lic := a.License()
	a.mu.Lock()
	s = localapi.Status{
		Registered:            a.registered,
		License:               lic,
		Version:               Version,
		StartedAt:             a.startedAt,
		LastRegistration:      timePtr(a.lastReg),
		LastRegistrationError: a.lastRegErr,
		Warnings:              a.cfg.Warnings(),
	}
	a.mu.Unlock()
	s.Device = a.ids.view()
	if a.api != nil {
		st := a.api.Stats()
		s.API = &st
	}
	if w := a.apiPortWarning(time.Now()); w != "" {
		s.Warnings = append(s.Warnings, w)
	}
	if e := a.enqueues.view(); e.FailingSince != nil {
		s.Warnings = append(s.Warnings, fmt.Sprintf("records cannot be stored since %s (%d failed): %s", e.FailingSince.Format(time.RFC3339), e.Failures, e.LastError))
	}
	st, err := a.queue.Stats()
	if err != nil {
		s.Outbox.LastError = "cannot read outbox stats: " + err.Error()
		s.Outbox.Enqueue = a.enqueues.view()
		return s
	}
	s.Online = st.Online
	s.OnlineSince = a.onlineSince(st.Online, st.LastErrorAt)
	s.LastFlush = timePtr(st.LastSuccess)
	s.Outbox = localapi.Outbox{
		Pending: st.Pending - st.InFlight, InFlight: st.InFlight, Dead: st.Dead,
		OldestPendingAgeS: int64(st.OldestPendingAge / time.Second), Bytes: st.Bytes,
		Enqueued: st.Enqueued, Delivered: st.Delivered, Coalesced: st.Coalesced, DeadLettered: st.DeadLettered,
		PausedUntil: timePtr(st.PausedUntil), LastError: st.LastError, Quarantined: st.Quarantined,
		FileGone:  st.FileGone,
		Enqueue:   a.enqueues.view(),
		Undecided: st.Undecided, UndecidedReason: st.UndecidedReason,
		Bookkeeping:   bookkeeping(st.Bookkeeping),
		CardConflicts: st.CardConflicts, LastCardConflict: st.LastCardConflict,
	}
	if st.Undecided > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf(UndecidedWarning+" (%d): %s; tposagent outbox retry --force ID sends one without looking", st.Undecided, st.UndecidedReason))
	}
	if st.CardConflicts > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("one integration_id was posted with two kasa card ids (%d since the start, kept as two cards): %s", st.CardConflicts, st.LastCardConflict))
	}
	if st.PausedUntil.After(a.now()) {
		s.Warnings = append(s.Warnings, fmt.Sprintf("the Ödüyo server asked to pause sending until %s (Retry-After)", st.PausedUntil.Format(time.RFC3339)))
	}
	if st.FileGone != "" {
		s.Warnings = append(s.Warnings, st.FileGone)
	}
	if st.Closed != "" {
		s.Warnings = append(s.Warnings, OutboxClosedWarning+": "+st.Closed)
	}
	if st.Quarantined != "" {
		s.Warnings = append(s.Warnings, fmt.Sprintf("a corrupt outbox file was moved aside to %s at %s", st.Quarantined, st.QuarantinedAt.Format(time.RFC3339)))
	}
	if st.UnrecordedError != "" { // outbox/faults.go: held, not sent again
		s.Warnings = append(s.Warnings, fmt.Sprintf("%s (%d records held until it can be recorded)", st.UnrecordedError, st.Unrecorded))
	}
	if st.Emptied != "" { // outbox/state.go
		s.Warnings = append(s.Warnings, st.Emptied)
	}
	return s
}

// writeMetrics adds the agent's own counters to /metrics.
func (a *Agent) writeMetrics(w io.Writer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fmt.Fprintf(w, "# HELP tposagent_registrations_total TPOSL registration attempts by result.\n# TYPE tposagent_registrations_total counter\n")
	for _, r := range []string{"ok", "error"} {
		fmt.Fprintf(w, "tposagent_registrations_total{result=%q} %d\n", r, a.regCount[r])
	}
	fmt.Fprintf(w, "# HELP tposagent_device_stuck_calls Serial driver calls abandoned at their deadline that have not returned.\n# TYPE tposagent_device_stuck_calls gauge\ntposagent_device_stuck_calls %d\n", device.Stuck())
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// connWatch remembers when the connectivity last changed, as Status saw
// it (guarded by Agent.mu).
type connWatch struct {
	known, online bool
	since         time.Time
}

// onlineSince notes online and returns since when it holds: an outage is
// dated by the failure that showed it; coming back is dated when a status
// first sees it, and the first state counts from the agent's start.
func (a *Agent) onlineSince(online bool, lastErrorAt time.Time) *time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &a.conn
	if !c.known || c.online != online {
		since := a.now()
		if !c.known {
			since = a.startedAt
		}
		if !online && !lastErrorAt.IsZero() {
			since = lastErrorAt // the failure that was noticed, not the moment of the poll
		}
		*c = connWatch{known: true, online: online, since: since}
	}
	return timePtr(c.since)
}

// bookkeeping is the outbox's bookkeeping for status and /metrics.
func bookkeeping(b outbox.Bookkeeping) *localapi.Bookkeeping {
	c := func(x outbox.BookCount) localapi.BookCount { return localapi.BookCount{Count: x.Count, Bytes: x.Bytes} }
	return &localapi.Bookkeeping{Aliases: c(b.Aliases), DeliveredMarks: c(b.DeliveredMarks), IdempotencyKeys: c(b.IdempotencyKeys),
		DeadLetters: c(b.DeadLetters), CountedAt: timePtr(b.CountedAt)}
}
