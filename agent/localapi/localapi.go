// Package localapi is the HTTP API the POS application calls on the till
// (DESIGN.md, "Local API"), and the client the CLI uses to talk to the
// running agent.
//
// Every call needs "Authorization: Bearer <api.token>", compared in
// constant time. Errors are {"error": "...", "field": "..."} with 400, 401,
// 404, 405, 413 or 503. A record is validated completely before it is
// queued, and 202 {"id": N} is answered only after the outbox has committed
// it durably: a rejected or failed request leaves nothing half-accepted.
package localapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/outbox"
)

// MaxBody is the largest request body accepted (413 beyond).
const MaxBody = 1 << 20

// Status is the body of GET /v1/status (DESIGN.md fixes its core keys).
type Status struct {
	Registered bool          `json:"registered"`
	Online     bool          `json:"online"`
	License    tposl.License `json:"license"`
	Device     Device        `json:"device"`
	Outbox     Outbox        `json:"outbox"`
	LastFlush  *time.Time    `json:"last_flush"`
	Version    string        `json:"version"`

	LastRegistration      *time.Time `json:"last_registration,omitempty"`
	LastRegistrationError string     `json:"last_registration_error,omitempty"`
	StartedAt             time.Time  `json:"started_at"`
	Warnings              []string   `json:"warnings,omitempty"`
}

// Device is the fiscal identity in Status.
type Device struct {
	FiscalSerial string     `json:"fiscal_serial"`
	Source       string     `json:"source"`
	Port         string     `json:"port"`
	ReadAt       *time.Time `json:"read_at"`
	ECRSerial    string     `json:"ecr_serial,omitempty"`
	Brand        string     `json:"brand,omitempty"`
	Model        string     `json:"model,omitempty"`
	Error        string     `json:"error,omitempty"` // why the device itself could not be read
}

// Outbox is the queue in Status.
type Outbox struct {
	Pending           int        `json:"pending"`   // waiting to be sent (in_flight not included)
	InFlight          int        `json:"in_flight"` // being sent now
	Dead              int        `json:"dead"`
	OldestPendingAgeS int64      `json:"oldest_pending_age_s"`
	Bytes             int64      `json:"bytes"`
	Enqueued          uint64     `json:"enqueued_total"`
	Delivered         uint64     `json:"delivered_total"`
	Coalesced         uint64     `json:"coalesced_total"`
	DeadLettered      uint64     `json:"dead_lettered_total"`
	PausedUntil       *time.Time `json:"paused_until,omitempty"`
	LastError         string     `json:"last_error,omitempty"`
	Quarantined       string     `json:"quarantined,omitempty"`
}

// Config is what the handler needs from the agent.
type Config struct {
	Token   string
	Queue   *outbox.Queue
	Status  func() Status        // a snapshot for /v1/status and /metrics
	License func() tposl.License // for /v1/license
	Logger  *slog.Logger
	Metrics func(w io.Writer) // extra metric lines (optional)
}

type handler struct {
	cfg   Config
	token []byte
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewHandler returns the local API.
func NewHandler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, token: []byte(cfg.Token), log: cfg.Logger}
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/status", h.status)
	m.HandleFunc("GET /v1/license", h.license)
	m.HandleFunc("POST /v1/kasa", h.enqueue(outbox.KindKasa, oduyo.NormalizeKasa))
	m.HandleFunc("POST /v1/special-codes", h.enqueue(outbox.KindSpecialCode, oduyo.NormalizeSpecialCode))
	m.HandleFunc("GET /v1/outbox", h.list)
	m.HandleFunc("POST /v1/outbox/{id}/retry", h.retry)
	m.HandleFunc("DELETE /v1/outbox/{id}", h.drop)
	m.HandleFunc("GET /metrics", h.metrics)
	h.mux = m
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tposagent"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong token: send Authorization: Bearer <api.token from the agent's config>", "")
		return
	}
	// The mux answers unknown paths and wrong methods; make them JSON too.
	if _, pattern := h.mux.Handler(r); pattern == "" {
		h.notRouted(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *handler) notRouted(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{header: http.Header{}}
	h.mux.ServeHTTP(rec, r)
	if rec.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", rec.header.Get("Allow"))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path), "")
		return
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path), "")
}

type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }

func (h *handler) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || len(h.token) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), h.token) == 1
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.cfg.Status())
}

func (h *handler) license(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.cfg.License())
}

// Accepted is the body of a 202.
type Accepted struct {
	ID  uint64 `json:"id"`
	Key string `json:"key"`
}

func (h *handler) enqueue(kind outbox.Kind, normalize func([]byte) (json.RawMessage, string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody), "")
				return
			}
			writeError(w, http.StatusBadRequest, "cannot read body: "+err.Error(), "")
			return
		}
		if !utf8.Valid(body) {
			writeError(w, http.StatusBadRequest, "body is not valid UTF-8 (send text as UTF-8; nothing was repaired or stored)", "")
			return
		}
		col, key, err := normalize(body)
		if err != nil {
			var fe *oduyo.FieldError
			if errors.As(err, &fe) {
				writeError(w, http.StatusBadRequest, err.Error(), fe.Field)
				return
			}
			writeError(w, http.StatusBadRequest, err.Error(), "")
			return
		}
		it, err := h.cfg.Queue.Enqueue(r.Context(), outbox.Entry{Kind: kind, Key: key, Payload: col, Coalesce: kind == outbox.KindKasa})
		switch {
		case errors.Is(err, outbox.ErrFull):
			w.Header().Set("Retry-After", "60")
			writeError(w, http.StatusServiceUnavailable, "outbox is full (outbox.max_size): nothing was stored; retry after the queue drains", "")
			return
		case err != nil:
			h.log.Error("enqueue failed", "kind", kind, "err", err)
			w.Header().Set("Retry-After", "10")
			writeError(w, http.StatusServiceUnavailable, "cannot store the record durably: "+err.Error()+"; nothing was stored", "")
			return
		}
		writeJSON(w, http.StatusAccepted, Accepted{ID: it.ID, Key: it.Key})
	}
}

// ItemView is one queue entry in GET /v1/outbox.
type ItemView struct {
	ID          uint64          `json:"id"`
	Kind        outbox.Kind     `json:"kind"`
	Key         string          `json:"key"`
	Created     time.Time       `json:"created"`
	Attempts    int             `json:"attempts"`
	NextAttempt *time.Time      `json:"next_attempt,omitempty"`
	LastError   string          `json:"last_error,omitempty"`
	DeadReason  string          `json:"dead_reason,omitempty"`
	DeadAt      *time.Time      `json:"dead_at,omitempty"`
	Payload     json.RawMessage `json:"payload"`
}

func view(it outbox.Item) ItemView {
	return ItemView{
		ID: it.ID, Kind: it.Kind, Key: it.Key, Created: it.Created, Attempts: it.Attempts,
		NextAttempt: timePtr(it.NextAttempt), LastError: it.LastError,
		DeadReason: it.DeadReason, DeadAt: timePtr(it.DeadAt), Payload: it.Payload,
	}
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := outbox.Pending
	switch q.Get("state") {
	case "", "pending":
	case "dead":
		state = outbox.Dead
	default:
		writeError(w, http.StatusBadRequest, `state must be "pending" or "dead"`, "state")
		return
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			writeError(w, http.StatusBadRequest, "limit must be 1..10000", "limit")
			return
		}
		limit = n
	}
	items, err := h.cfg.Queue.List(state, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "list outbox: "+err.Error(), "")
		return
	}
	out := make([]ItemView, 0, len(items))
	for _, it := range items {
		out = append(out, view(it))
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": q.Get("state"), "items": out})
}

func (h *handler) retry(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, h.cfg.Queue.Retry, "retried")
}

func (h *handler) drop(w http.ResponseWriter, r *http.Request) {
	h.act(w, r, h.cfg.Queue.Drop, "dropped")
}

func (h *handler) act(w http.ResponseWriter, r *http.Request, do func(uint64) error, done string) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, "id must be a positive integer", "id")
		return
	}
	switch err := do(id); {
	case errors.Is(err, outbox.ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no outbox item %d", id), "id")
	case errors.Is(err, outbox.ErrInFlight):
		writeError(w, http.StatusConflict, fmt.Sprintf("item %d is being sent right now; try again in a moment", id), "id")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error(), "")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "result": done})
	}
}

// ErrorBody is the JSON of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg, field string) {
	writeJSON(w, code, ErrorBody{Error: msg, Field: field})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
