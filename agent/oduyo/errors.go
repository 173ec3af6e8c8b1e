package oduyo

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class tells the outbox what to do with a failed delivery.
type Class int

const (
	// Transient failures (network, timeouts, 408, 429, 5xx, garbled
	// answers) are retried with backoff, honouring RetryAfter.
	Transient Class = iota
	// Permanent failures ("status": false, other 4xx, invalid records)
	// go to the dead letter queue; retrying the same record will not help.
	Permanent
	// Auth failures (credentials refused, or 401/403 again right after a
	// fresh login) need a person to fix the configuration.
	Auth
)

// String returns "transient", "permanent" or "auth".
func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	case Auth:
		return "auth"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// OpLogin is Error.Op of a failed login.
const OpLogin = "login"

// MaxRetryAfter caps what ParseRetryAfter returns, so that a confused
// server cannot stop delivery for days.
const MaxRetryAfter = 24 * time.Hour

// Error is a classified failure of one call to the Ödüyo API.
//
// Error() never contains a password, the API key or the session id: Msg is
// built by this package from status codes and server messages only.
type Error struct {
	Op         string        // "login", "update kasa", "create special code", "probe"
	Class      Class         // what the outbox should do
	StatusCode int           // HTTP status; 0 when no answer arrived
	RetryAfter time.Duration // from the Retry-After header; 0 when absent
	Msg        string        // what went wrong, for a person
	// Foreign: the answer was not Ödüyo's (a redirect, an HTML page, a
	// proxy's error, JSON without a boolean status). It says nothing
	// about the record; the server is not reachable as Ödüyo.
	Foreign bool
	Err     error // the underlying cause (network error, context error), if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("oduyo ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "http %d: ", e.StatusCode)
	}
	b.WriteString(e.Msg)
	if e.Err != nil {
		if e.Msg != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	fmt.Fprintf(&b, " (%s", e.Class)
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Classify returns the class of err and how long the server asked us to
// wait. A *Error keeps its class; network
// errors, timeouts, context errors and anything unknown are Transient.
// Classify(nil) returns (Transient, 0): callers check for nil first.
func Classify(err error) (Class, time.Duration) {
	if err == nil {
		return Transient, 0
	}
	var oe *Error
	if errors.As(err, &oe) {
		// A wrapped error's wait counts too (a probe's failed login).
		ra := oe.RetryAfter
		for inner := oe; ra == 0 && errors.As(inner.Err, &inner); {
			ra = inner.RetryAfter
		}
		return oe.Class, ra
	}
	// Network errors, timeouts, context errors and the unknown: retry.
	return Transient, 0
}

// ParseRetryAfter parses a Retry-After header value: delay-seconds or an
// HTTP-date (RFC 9110 §10.2.3). A date in the past gives 0. The result is
// capped at MaxRetryAfter. ok is false for an empty or malformed value.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		for i := 0; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				return 0, false
			}
		}
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(MaxRetryAfter/time.Second) {
			// Only overflow fails here: all digits were checked.
			return MaxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	if d > MaxRetryAfter {
		d = MaxRetryAfter
	}
	return d, true
}
