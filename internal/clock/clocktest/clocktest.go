// Package clocktest provides a manual clock.Clock for tests: time moves
// only when the test says so, and the wall clock can be set back or
// forward without time passing, as when a till's clock is corrected.
package clocktest

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/tposagent/tposagent/internal/clock"
)

// Clock is a manual clock. It keeps two times: the wall clock that Now
// returns and the elapsed time that timers measure (the monotonic clock).
// Advance moves both; Jump moves only the wall clock, so timers still
// fire after their duration, as real timers do. Safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	elapsed time.Duration // monotonic: only grows
	base    time.Time     // wall = base + elapsed
	timers  []*timer
	change  chan struct{} // closed and replaced whenever timers change
}

var _ clock.Clock = (*Clock)(nil)

// New returns a clock at t (a fixed date when t is zero).
func New(t time.Time) *Clock {
	if t.IsZero() {
		t = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	}
	return &Clock{base: t, change: make(chan struct{})}
}

type timer struct {
	c    *Clock
	at   time.Duration // elapsed time at which it fires
	ch   chan time.Time
	done bool
}

func (t *timer) C() <-chan time.Time { return t.ch }

// When is the wall-clock time at which the timer fires (or fired): what a
// test that watches the timers needs, read from the timer itself rather
// than recomputed from Now, which another goroutine may have moved since
// the timer was made.
func (t *timer) When() time.Time {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	return t.c.base.Add(t.at)
}

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	t.c.remove(t)
	return true
}

// Now returns the wall-clock time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now()
}

func (c *Clock) now() time.Time { return c.base.Add(c.elapsed) }

// NewTimer implements clock.Clock; d <= 0 fires at once.
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.elapsed + d, ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.done = true
		t.ch <- c.now()
		return t
	}
	c.timers = append(c.timers, t)
	c.notify()
	return t
}

func (c *Clock) notify() {
	close(c.change)
	c.change = make(chan struct{})
}

func (c *Clock) remove(t *timer) {
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			c.notify()
			return
		}
	}
}

// Advance lets d pass (d < 0 counts as 0): both clocks move forward and
// the timers that are due fire, earliest first.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.elapsed += d
	}
	sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at < c.timers[j].at })
	kept := c.timers[:0]
	fired := false
	for _, x := range c.timers {
		if x.at <= c.elapsed {
			x.done = true
			x.ch <- c.now()
			fired = true
			continue
		}
		kept = append(kept, x)
	}
	clear(c.timers[len(kept):])
	c.timers = kept
	if fired {
		c.notify()
	}
}

// Set lets time pass until the wall clock reads t. A t in the past is a
// backward jump of the wall clock (see Jump): no time passes.
func (c *Clock) Set(t time.Time) {
	d := t.Sub(c.Now())
	if d < 0 {
		c.Jump(d)
		return
	}
	c.Advance(d)
}

// Jump sets the wall clock by d, back (d < 0) or forward, without time
// passing: no timer fires, and each still fires after its duration.
// Deadlines (Next, WaitFor) are reported on the new wall clock.
func (c *Clock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = c.base.Add(d)
	c.notify()
}

// Pending returns how many timers are waiting.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Next returns the wall-clock time at which the earliest waiting timer
// fires.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := c.deadlines()
	if len(ds) == 0 {
		return time.Time{}, false
	}
	next := ds[0]
	for _, d := range ds[1:] {
		if d.Before(next) {
			next = d
		}
	}
	return next, true
}

func (c *Clock) deadlines() []time.Time {
	ds := make([]time.Time, len(c.timers))
	for i, t := range c.timers {
		ds[i] = c.base.Add(t.at)
	}
	return ds
}

// BlockUntil waits until at least n timers are waiting or ctx is done.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	return c.WaitFor(ctx, func(deadlines []time.Time) bool { return len(deadlines) >= n })
}

// WaitFor waits until cond holds for the wall-clock deadlines of the
// waiting timers (checked whenever they change) or ctx is done.
func (c *Clock) WaitFor(ctx context.Context, cond func(deadlines []time.Time) bool) error {
	for {
		c.mu.Lock()
		ds := c.deadlines()
		ch := c.change
		c.mu.Unlock()
		if cond(ds) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
