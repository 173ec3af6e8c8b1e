package localapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
)

// Lists of GET /v1/outbox are paged: at most MaxListLimit items per
// answer (a bigger limit is served as MaxListLimit), DefaultListLimit
// when none is asked, and next_cursor in the answer while more follow
// (pass it back as ?cursor=). The answer is written item by item as the
// queue reads them, so its memory does not grow with the limit or the
// record sizes (Queue.Page).
const (
	MaxListLimit     = 500
	DefaultListLimit = 100
)

// list: GET /v1/outbox?state=pending|dead&limit=N&cursor=C. The cursor is
// opaque to callers (today the id of the last item of the previous page).
// An error after the first item was written cannot change the status
// any more: the answer then ends with "error" (and next_cursor where to
// go on), which clients must check.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state, stateName := Pending, "pending"
	switch q.Get("state") {
	case "", "pending":
	case "dead":
		state, stateName = Dead, "dead"
	default:
		writeError(w, http.StatusBadRequest, `state must be "pending" or "dead"`, "state")
		return
	}
	limit := DefaultListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange || s[0] == '-' {
				writeError(w, http.StatusBadRequest, "limit must be a positive whole number (at most "+strconv.Itoa(MaxListLimit)+" items are answered)", "limit")
				return
			}
			n = MaxListLimit // a number too big for an int: the cap
		}
		limit = min(n, MaxListLimit)
	}
	var after uint64
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "cursor must be the next_cursor of a previous answer", "cursor")
			return
		}
		after = n
	}
	lw := &listWriter{w: w, state: stateName, limit: limit}
	var last uint64
	var more bool
	var err error
	last, more, err = h.cfg.Queue.Page(state, after, limit, lw.item)
	if err != nil && !lw.started {
		writeError(w, http.StatusServiceUnavailable, "list outbox: "+err.Error(), "")
		return
	}
	if err != nil {
		h.log.Warn("list outbox: failed after the answer began", "err", err)
	}
	lw.finish(last, more, err)
}

// listWriter writes the answer of GET /v1/outbox as the items come.
type listWriter struct {
	w       http.ResponseWriter
	bw      *bufio.Writer
	state   string
	limit   int
	started bool
	n       int
}

func (lw *listWriter) start() {
	lw.started = true
	h := lw.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	lw.w.WriteHeader(http.StatusOK)
	lw.bw = bufio.NewWriterSize(lw.w, 32<<10)
	st, _ := json.Marshal(lw.state)
	lw.bw.WriteString(`{"state": ` + string(st) + `, "limit": ` + strconv.Itoa(lw.limit) + `, "items": [`)
}

func (lw *listWriter) item(it ItemView) error {
	if !lw.started {
		lw.start()
	}
	b, err := json.MarshalIndent(it, "  ", "  ")
	if err != nil {
		return err
	}
	if lw.n > 0 {
		lw.bw.WriteByte(',')
	}
	lw.bw.WriteString("\n  ")
	lw.n++
	_, err = lw.bw.Write(b)
	return err // a client gone: stop reading the queue
}

// finish ends the answer: next_cursor while more follow, error when the
// list broke off.
func (lw *listWriter) finish(last uint64, more bool, err error) {
	if !lw.started {
		lw.start()
	}
	if lw.n > 0 {
		lw.bw.WriteString("\n")
	}
	lw.bw.WriteString("]")
	if more || err != nil {
		lw.bw.WriteString(`, "next_cursor": "` + strconv.FormatUint(last, 10) + `"`)
	}
	if err != nil {
		msg, _ := json.Marshal("list outbox: " + err.Error() + " (the items above are valid; go on from next_cursor)")
		lw.bw.WriteString(`, "error": ` + string(msg))
	}
	lw.bw.WriteString("}\n")
	lw.bw.Flush()
}
