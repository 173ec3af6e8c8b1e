// Package localapi is the HTTP API the POS application calls on the till,
// and the client the CLI uses to talk to the running agent.
//
// It owns the small interfaces it needs (Queue for the records, and
// functions for the status and the licence) and the record validation of
// agent/records; it imports neither the outbox nor a server client — the
// agent adapts those to it.
//
// Every call needs "Authorization: Bearer <api.token>", compared in
// constant time — except GET / (the status page for store staff, page.go),
// GET /v1/openapi.json (the API's OpenAPI document, openapi.go) and GET
// /v1/hello (the proof that this server knows the token, guard.go), which
// show no secret and change nothing. Before anything else a request's Host
// must be one of the agent's names (421 otherwise, against DNS rebinding)
// and a call that changes state must not come from a foreign Origin (403;
// guard.go). Errors are {"error": "...", "field": "..."} with 400, 401,
// 403, 404, 405, 408, 409, 413, 421, 431 or 503. What one caller can cost
// is bounded by the Server (server.go): headers, body rate, connections,
// time.
// A record is validated completely before it is
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

	"github.com/tposagent/tposagent/agent/license"
	"github.com/tposagent/tposagent/agent/records"
)

// MaxBody is the largest request body accepted (413 beyond): the largest
// record, so that no valid record is refused and nothing bigger is read.
const MaxBody = records.MaxRecordBytes

// Status is the body of GET /v1/status (its core keys are a contract with
// the POS developers: docs/local-api.md).
type Status struct {
	Registered bool `json:"registered"`
	Online     bool `json:"online"`
	// OnlineSince is when Online last changed as far as the agent knows
	// (the first failure of an outage; the first success after one).
	OnlineSince *time.Time      `json:"online_since,omitempty"`
	License     license.License `json:"license"`
	Device      Device          `json:"device"`
	Outbox      Outbox          `json:"outbox"`
	LastFlush   *time.Time      `json:"last_flush"`
	Version     string          `json:"version"`

	LastRegistration      *time.Time `json:"last_registration,omitempty"`
	LastRegistrationError string     `json:"last_registration_error,omitempty"`
	StartedAt             time.Time  `json:"started_at"`
	Warnings              []string   `json:"warnings,omitempty"`
	// API is what the connection limit of the local API did.
	API *ServerStats `json:"api,omitempty"`
}

// Device is the fiscal identity in Status and the body of GET /v1/device:
// the identity registration uses, and every source with its value and age.
type Device struct {
	FiscalSerial string     `json:"fiscal_serial"`
	Source       string     `json:"source"` // config, device, pos, cache, or none
	Port         string     `json:"port"`
	Protocol     string     `json:"protocol,omitempty"` // the GMP-3 dialect that answered
	ReadAt       *time.Time `json:"read_at"`
	ECRSerial    string     `json:"ecr_serial,omitempty"`
	Brand        string     `json:"brand,omitempty"`
	Model        string     `json:"model,omitempty"`
	Error        string     `json:"error,omitempty"` // why the device itself could not be read
	ErrorSince   *time.Time `json:"error_since,omitempty"`
	// Conflict is true when two sources name different fiscal serials;
	// Conflicting then maps each such source to its value.
	Conflict    bool              `json:"conflict"`
	Conflicting map[string]string `json:"conflicting,omitempty"`
	// Sources maps "config", "device", "pos" and "cache" to what each
	// says; a source with nothing to say has an empty fiscal_serial.
	Sources map[string]DeviceSource `json:"sources,omitempty"`
	// StuckCalls counts port driver calls abandoned at their deadline that
	// have not returned yet (0 on a healthy till).
	StuckCalls int `json:"stuck_calls,omitempty"`
	// NotOpened says why the agent leaves the device alone now (a fresh
	// POS report); "" when it may read it.
	NotOpened string `json:"not_opened,omitempty"`
}

// DeviceSource is what one source says of the identity.
type DeviceSource struct {
	FiscalSerial string     `json:"fiscal_serial"`
	ECRSerial    string     `json:"ecr_serial,omitempty"`
	Brand        string     `json:"brand,omitempty"`
	Model        string     `json:"model,omitempty"`
	Port         string     `json:"port,omitempty"`
	Protocol     string     `json:"protocol,omitempty"`
	At           *time.Time `json:"at,omitempty"`    // when it was read or reported
	AgeS         *int64     `json:"age_s,omitempty"` // seconds since At
	Error        string     `json:"error,omitempty"`
	// Fresh (the POS report only): younger than device.pos_report_max_age,
	// so it is used before a device read and the device is not opened.
	Fresh bool `json:"fresh,omitempty"`
}

// DeviceReport is the body of PUT /v1/device: the identity of the device
// the POS program is paired with (its pairing answer carries all four).
type DeviceReport struct {
	FiscalSerial string `json:"fiscal_serial"`        // required, e.g. JI20012345
	Brand        string `json:"brand,omitempty"`      // e.g. HUGIN
	Model        string `json:"model,omitempty"`      // e.g. T300
	ECRSerial    string `json:"ecr_serial,omitempty"` // the ECR serial (POS_SERI_NO when store.pos_serial is empty)
	// Port is where the POS talks to its ÖKC (COM3, /dev/ttyUSB0,
	// tcp://192.168.1.50:4444): the agent asks only that port when it
	// must read the device, and never scans for it.
	Port string `json:"port,omitempty"`
}

// Limits of a DeviceReport's fields, in characters: fiscal_serial up to
// MaxDeviceSerial, port up to MaxDevicePort, the others up to
// MaxDeviceText.
const (
	MaxDeviceText   = 64
	MaxDeviceSerial = 32
	MaxDevicePort   = 256
)

// DeviceIdentity is what the handler needs for /v1/device.
type DeviceIdentity interface {
	// Device is the identity and its sources now.
	Device() Device
	// ReportDevice keeps r durably as the POS's report and returns the
	// identity after it. An error wrapping *records.FieldError is the
	// caller's mistake (400); any other error means nothing was kept.
	ReportDevice(r DeviceReport) (Device, error)
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
	// FileGone: the outbox file was deleted or replaced while the agent
	// ran; new records are refused until a restart.
	FileGone string   `json:"file_gone,omitempty"`
	Enqueue  Enqueues `json:"enqueue"`
	// Undecided counts the records waiting for a lookup that cannot
	// decide whether an earlier attempt delivered them; UndecidedReason
	// says why (the oldest one's last error).
	Undecided       int    `json:"undecided,omitempty"`
	UndecidedReason string `json:"undecided_reason,omitempty"`
	// CardConflicts counts, since the start, the integration_ids posted
	// with another card id than before (the cards are kept apart);
	// LastCardConflict describes the newest.
	CardConflicts    uint64 `json:"card_conflicts,omitempty"`
	LastCardConflict string `json:"last_card_conflict,omitempty"`
	// Bookkeeping: what the outbox keeps beside its records (books.go).
	Bookkeeping *Bookkeeping `json:"bookkeeping,omitempty"`
}

// Enqueues tells whether records can be stored: a full queue or a full
// disk makes every POST fail with 503.
type Enqueues struct {
	Failures     uint64     `json:"failures_total"`          // failed enqueues since start
	LastError    string     `json:"last_error,omitempty"`    // the last failure
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"` //
	FailingSince *time.Time `json:"failing_since,omitempty"` // set while enqueues fail: the first failure after the last success
}

// Config is what the handler needs from the agent.
type Config struct {
	Token   string
	Queue   Queue
	Status  func() Status          // a snapshot for /v1/status and /metrics
	License func() license.License // for /v1/license
	Logger  *slog.Logger
	Metrics func(w io.Writer) // extra metric lines (optional)
	Device  DeviceIdentity    // for /v1/device; nil: not served (404)
	// Listen is api.listen (or the address listened on): loopback serves
	// only the loopback names; a widened one also the machine's names and
	// AllowedHosts (guard.go). Empty: judged as loopback.
	Listen       string
	AllowedHosts []string // api.allowed_hosts
}

type handler struct {
	cfg   Config
	guard *hostGuard
	token []byte
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewHandler returns the local API.
func NewHandler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{cfg: cfg, token: []byte(strings.TrimSpace(cfg.Token)), log: cfg.Logger,
		guard: newHostGuard(cfg.Listen, cfg.AllowedHosts)}
	m := http.NewServeMux()
	m.HandleFunc("GET /v1/status", h.status)
	m.HandleFunc("GET /v1/license", h.license)
	m.HandleFunc("POST /v1/kasa", h.enqueue(KindKasa, records.NormalizeKasa))
	m.HandleFunc("POST /v1/special-codes", h.enqueue(KindSpecialCode, records.NormalizeSpecialCode))
	m.HandleFunc("GET /v1/outbox", h.list)
	m.HandleFunc("POST /v1/outbox/{id}/retry", h.retry)
	m.HandleFunc("DELETE /v1/outbox/{id}", h.drop)
	m.HandleFunc("GET /metrics", h.metrics)
	if cfg.Device != nil {
		m.HandleFunc("GET /v1/device", h.getDevice)
		m.HandleFunc("PUT /v1/device", h.putDevice)
	}
	m.HandleFunc("GET /{$}", h.page)                   // served before the token check (public)
	m.HandleFunc("GET /v1/openapi.json", serveOpenAPI) // likewise
	m.HandleFunc("GET /v1/hello", h.hello)             // likewise (guard.go)
	h.mux = m
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.guard.check(w, r) { // a foreign Host or Origin: before anything else
		return
	}
	if h.public(w, r) { // the status page and the API document need no token
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tposagent"`)
		writeErrorClose(w, r, http.StatusUnauthorized, "missing or wrong token: send Authorization: Bearer <api.token from the agent's config>", "")
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

// authorized checks "Authorization: Bearer <token>". The scheme is
// case-insensitive (RFC 7235: "bearer" and "BEARER" are the same scheme),
// the token is not; spaces around it are ignored.
func (h *handler) authorized(r *http.Request) bool {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || len(h.token) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), h.token) == 1
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.cfg.Status())
}

func (h *handler) license(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.cfg.License())
}

func (h *handler) enqueue(kind Kind, normalize func([]byte) (json.RawMessage, string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(w, r)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeErrorClose(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody), "")
				return
			}
			writeErrorClose(w, r, http.StatusBadRequest, "cannot read body: "+err.Error(), "")
			return
		}
		if !utf8.Valid(body) {
			writeError(w, http.StatusBadRequest, "body is not valid UTF-8 (send text as UTF-8; nothing was repaired or stored)", "")
			return
		}
		col, key, err := normalize(body)
		if err != nil {
			var fe *records.FieldError
			if errors.As(err, &fe) {
				writeError(w, http.StatusBadRequest, err.Error(), fe.Field)
				return
			}
			writeError(w, http.StatusBadRequest, err.Error(), "")
			return
		}
		idem, ok := idempotencyKey(r.Header)
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Idempotency-Key must be one header of 1 to %d printable ASCII characters (spaces inside it are allowed); nothing was stored", MaxIdempotencyKey), "Idempotency-Key")
			return
		}
		acc, err := h.cfg.Queue.Enqueue(r.Context(), Record{Kind: kind, Key: key, Column: col, IdempotencyKey: idem})
		switch {
		case errors.Is(err, ErrIdempotencyConflict):
			writeError(w, http.StatusConflict, "Idempotency-Key "+strconv.Quote(idem)+" was already used for another record: "+err.Error()+"; nothing was stored", "Idempotency-Key")
			return
		case errors.Is(err, ErrFull):
			w.Header().Set("Retry-After", "60")
			writeError(w, http.StatusServiceUnavailable, "outbox is full (outbox.max_size): nothing was stored; retry after the queue drains", "")
			return
		case errors.Is(err, ErrMaybeStored):
			// A frozen or failing disk: answered within the bound, not
			// acknowledged; the same Idempotency-Key makes a retry safe.
			h.log.Error("enqueue not confirmed by the disk in time", "kind", kind, "err", err)
			w.Header().Set("Retry-After", "10")
			writeError(w, http.StatusServiceUnavailable, "cannot store the record durably: "+err.Error()+"; it was not acknowledged", "")
			return
		case err != nil:
			h.log.Error("enqueue failed", "kind", kind, "err", err)
			w.Header().Set("Retry-After", "10")
			writeError(w, http.StatusServiceUnavailable, "cannot store the record durably: "+err.Error()+"; nothing was stored", "")
			return
		}
		writeAccepted(w, acc)
	}
}

// MaxIdempotencyKey bounds the Idempotency-Key header.
const MaxIdempotencyKey = 128

// idempotencyKey reads the optional Idempotency-Key header: absent gives
// "", true; present it must be one value of 1..128 printable ASCII
// characters, spaces included (surrounding spaces are not part of it).
func idempotencyKey(h http.Header) (string, bool) {
	vals := h.Values("Idempotency-Key")
	switch len(vals) {
	case 0:
		return "", true
	case 1:
	default:
		return "", false
	}
	k := strings.Trim(vals[0], " \t")
	if k == "" || len(k) > MaxIdempotencyKey {
		return "", false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", false
		}
	}
	return k, true
}

// retry: POST /v1/outbox/{id}/retry[?force=true]. Without force, a dead
// update of a record with a newer update delivered, being sent or pending
// is refused with 409 naming the newer one. With force on a pending
// record: send it without looking it up first.
func (h *handler) retry(w http.ResponseWriter, r *http.Request) {
	force := false
	switch strings.ToLower(r.URL.Query().Get("force")) {
	case "", "0", "false", "no":
	case "1", "true", "yes":
		force = true
	default:
		writeError(w, http.StatusBadRequest, "force must be true or false", "force")
		return
	}
	h.act(w, r, func(id uint64) error { return h.cfg.Queue.Retry(id, force) }, "retried")
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
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no outbox item %d", id), "id")
	case errors.Is(err, ErrUnsendable):
		writeError(w, http.StatusConflict, fmt.Sprintf("item %d is a damaged record that cannot be sent; drop it", id), "id")
	case errors.Is(err, ErrInFlight):
		writeError(w, http.StatusConflict, fmt.Sprintf("item %d is being sent right now; try again in a moment", id), "id")
	case errors.Is(err, ErrSuperseded):
		writeError(w, http.StatusConflict, err.Error()+" — nothing was changed; retry with force to send the older state anyway", "id")
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, err.Error(), "")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "result": done})
	}
}

func (h *handler) getDevice(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.cfg.Device.Device())
}

// putDevice takes the POS's report of the paired device's identity.
func (h *handler) putDevice(w http.ResponseWriter, r *http.Request) {
	// The one documented body limit of the API (a report is far smaller;
	// its fields are bounded one by one below).
	body, err := readBody(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeErrorClose(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", MaxBody), "")
			return
		}
		writeErrorClose(w, r, http.StatusBadRequest, "cannot read body: "+err.Error(), "")
		return
	}
	rep, err := ParseDeviceReport(body)
	if err != nil {
		var fe *records.FieldError
		if errors.As(err, &fe) {
			writeError(w, http.StatusBadRequest, err.Error(), fe.Field)
			return
		}
		writeError(w, http.StatusBadRequest, err.Error(), "")
		return
	}
	d, err := h.cfg.Device.ReportDevice(rep)
	if err != nil {
		var fe *records.FieldError
		if errors.As(err, &fe) {
			writeError(w, http.StatusBadRequest, err.Error(), fe.Field)
			return
		}
		h.log.Error("cannot keep the device report", "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot keep the report: "+err.Error()+"; nothing was changed", "")
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// ParseDeviceReport decodes and checks a PUT /v1/device body: one JSON
// object, valid UTF-8, no unknown keys, fiscal_serial present, the text
// fields within their limits and free of control characters. The shape of
// the fiscal serial is checked by the DeviceIdentity.
func ParseDeviceReport(body []byte) (DeviceReport, error) {
	var rep DeviceReport
	if !utf8.Valid(body) {
		return rep, errors.New("body is not valid UTF-8 (send text as UTF-8; nothing was kept)")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return DeviceReport{}, fmt.Errorf("body must be a JSON object {\"fiscal_serial\", \"brand\", \"model\", \"ecr_serial\", \"port\"}: %v", err)
	}
	if dec.More() {
		return DeviceReport{}, errors.New("body must hold one JSON object")
	}
	rep.FiscalSerial = strings.TrimSpace(rep.FiscalSerial)
	rep.Brand, rep.Model, rep.ECRSerial = strings.TrimSpace(rep.Brand), strings.TrimSpace(rep.Model), strings.TrimSpace(rep.ECRSerial)
	rep.Port = strings.TrimSpace(rep.Port)
	if rep.FiscalSerial == "" {
		return DeviceReport{}, &records.FieldError{Field: "fiscal_serial", Msg: "is required (the fiscal id of the paired ÖKC, e.g. JI20012345)"}
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"fiscal_serial", rep.FiscalSerial, MaxDeviceSerial}, {"brand", rep.Brand, MaxDeviceText},
		{"model", rep.Model, MaxDeviceText}, {"ecr_serial", rep.ECRSerial, MaxDeviceText},
		{"port", rep.Port, MaxDevicePort},
	} {
		if n := utf8.RuneCountInString(f.v); n > f.max {
			return DeviceReport{}, &records.FieldError{Field: f.name, Msg: fmt.Sprintf("is %d characters, at most %d", n, f.max)}
		}
		if strings.IndexFunc(f.v, func(r rune) bool { return r < 0x20 || r == 0x7F || (r >= 0x80 && r < 0xA0) }) >= 0 {
			return DeviceReport{}, &records.FieldError{Field: f.name, Msg: "contains control characters"}
		}
	}
	return rep, nil
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
