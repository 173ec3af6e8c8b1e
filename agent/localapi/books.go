package localapi

import (
	"fmt"
	"io"
	"time"
)

// Bookkeeping is what the outbox keeps beside its records, per kind: the
// entries and the bytes of the file's pages that hold them. The outbox's
// janitor counts them in the background (at start, every few minutes and
// after each pruning: counted_at); the dead letters' count is the
// current one. Each kind has its bound (docs/local-api.md, "Outbox
// bookkeeping").
type Bookkeeping struct {
	Aliases         BookCount  `json:"aliases"`          // card names linked to one card
	DeliveredMarks  BookCount  `json:"delivered_marks"`  // the newest delivered update of each card
	IdempotencyKeys BookCount  `json:"idempotency_keys"` // the POS's Idempotency-Key values (kept 7 days)
	DeadLetters     BookCount  `json:"dead_letters"`     // records the server refused (kept 30 days, at most 10,000)
	CountedAt       *time.Time `json:"counted_at,omitempty"`
}

// BookCount is one kind of bookkeeping.
type BookCount struct {
	Count int   `json:"count"`
	Bytes int64 `json:"bytes"`
}

// kinds lists the kinds with their metric label.
func (b *Bookkeeping) kinds() []struct {
	label string
	c     BookCount
} {
	return []struct {
		label string
		c     BookCount
	}{{"aliases", b.Aliases}, {"delivered_marks", b.DeliveredMarks}, {"idempotency_keys", b.IdempotencyKeys}, {"dead_letters", b.DeadLetters}}
}

// writeBookMetrics writes each kind's entries and bytes.
func writeBookMetrics(w io.Writer, b *Bookkeeping) {
	if b == nil {
		return
	}
	fmt.Fprintf(w, "# HELP tposagent_outbox_bookkeeping_entries Entries the outbox keeps beside its records, by kind.\n# TYPE tposagent_outbox_bookkeeping_entries gauge\n")
	for _, k := range b.kinds() {
		fmt.Fprintf(w, "tposagent_outbox_bookkeeping_entries{kind=%q} %d\n", k.label, k.c.Count)
	}
	fmt.Fprintf(w, "# HELP tposagent_outbox_bookkeeping_bytes Bytes of the outbox file's pages that hold its bookkeeping, by kind.\n# TYPE tposagent_outbox_bookkeeping_bytes gauge\n")
	for _, k := range b.kinds() {
		fmt.Fprintf(w, "tposagent_outbox_bookkeeping_bytes{kind=%q} %d\n", k.label, k.c.Bytes)
	}
}
