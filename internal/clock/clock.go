// Package clock is the agent's one abstraction of time, shared by the
// outbox and the registration loop so that tests can drive both with a
// manual clock (package clocktest). It owns only the interface and the
// real clock; it imports nothing of the agent.
//
// Timers measure elapsed time, not wall-clock time: like the standard
// library's timers (which use the monotonic clock) they fire after their
// duration even when the wall clock is set back or forward meanwhile.
// Code that stores wall-clock times (due times on disk) must therefore
// expect Now to jump in both directions.
package clock

import "time"

// Clock is a source of wall-clock time and of timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that delivers the time on C once d has
	// passed (at once when d <= 0).
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was pending.
	Stop() bool
}

// Real is the system clock.
type Real struct{}

var _ Clock = Real{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// OrReal returns c, or the real clock when c is nil.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real{}
	}
	return c
}
