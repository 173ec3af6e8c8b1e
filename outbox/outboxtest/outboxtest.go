// Package outboxtest provides fakes for testing code that uses the outbox:
// a manual Clock and a scripted Sender.
package outboxtest

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/tposagent/tposagent/outbox"
)

// Clock is a manual outbox.Clock: time moves only with Advance or Set.
// Safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
	change chan struct{} // closed and replaced whenever timers change
}

var _ outbox.Clock = (*Clock)(nil)

// NewClock returns a clock at t (a fixed date when t is zero).
func NewClock(t time.Time) *Clock {
	if t.IsZero() {
		t = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	}
	return &Clock{now: t, change: make(chan struct{})}
}

type timer struct {
	c    *Clock
	at   time.Time
	ch   chan time.Time
	done bool
}

func (t *timer) C() <-chan time.Time { return t.ch }

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

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements outbox.Clock; d <= 0 fires at once.
func (c *Clock) NewTimer(d time.Duration) outbox.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.done = true
		t.ch <- c.now
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

// Advance moves the clock forward by d and fires the timers that are due,
// earliest first.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards) and fires due timers.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	kept := c.timers[:0]
	fired := false
	for _, x := range c.timers {
		if !x.at.After(c.now) {
			x.done = true
			x.ch <- c.now
			fired = true
			continue
		}
		kept = append(kept, x)
	}
	c.timers = kept
	if fired {
		c.notify()
	}
}

// Pending returns how many timers are waiting.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Next returns the deadline of the earliest waiting timer.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next time.Time
	for _, t := range c.timers {
		if next.IsZero() || t.at.Before(next) {
			next = t.at
		}
	}
	return next, !next.IsZero()
}

// BlockUntil waits until at least n timers are waiting or ctx is done.
func (c *Clock) BlockUntil(ctx context.Context, n int) error {
	return c.WaitFor(ctx, func(deadlines []time.Time) bool { return len(deadlines) >= n })
}

// WaitFor waits until cond holds for the deadlines of the waiting timers
// (checked whenever they change) or ctx is done.
func (c *Clock) WaitFor(ctx context.Context, cond func(deadlines []time.Time) bool) error {
	for {
		c.mu.Lock()
		ds := make([]time.Time, len(c.timers))
		for i, t := range c.timers {
			ds[i] = t.at
		}
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

// Call is one Send seen by a Sender.
type Call struct {
	Item   outbox.Item
	Result outbox.Result
}

// Sender is a scripted outbox.Sender. Results are taken, in order, from
// the script for the item's ID, else the script for its Key, else
// Default (the zero Result: Delivered). Safe for concurrent use.
type Sender struct {
	// Hook, when set, runs before each Send (e.g. to block on a channel);
	// a non-nil result replaces the scripted one.
	Hook func(ctx context.Context, it outbox.Item) *outbox.Result

	mu       sync.Mutex
	byID     map[uint64][]outbox.Result
	byKey    map[string][]outbox.Result
	def      outbox.Result
	probe    []error
	probeDef error
	calls    []Call
	probes   int
	change   chan struct{}
}

var _ outbox.Sender = (*Sender)(nil)

// NewSender returns a Sender that delivers everything.
func NewSender() *Sender {
	return &Sender{byID: map[uint64][]outbox.Result{}, byKey: map[string][]outbox.Result{}, change: make(chan struct{})}
}

// ScriptID queues results for the item with that id.
func (s *Sender) ScriptID(id uint64, rs ...outbox.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[id] = append(s.byID[id], rs...)
}

// ScriptKey queues results for items of that key.
func (s *Sender) ScriptKey(key string, rs ...outbox.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byKey[key] = append(s.byKey[key], rs...)
}

// SetDefault sets the result when no script applies.
func (s *Sender) SetDefault(r outbox.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = r
}

// ScriptProbe queues probe results; after them SetProbe's applies.
func (s *Sender) ScriptProbe(errs ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probe = append(s.probe, errs...)
}

// SetProbe sets the probe result when no script applies (nil: reachable).
func (s *Sender) SetProbe(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probeDef = err
}

// Send implements outbox.Sender.
func (s *Sender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	var hooked *outbox.Result
	if s.Hook != nil {
		hooked = s.Hook(ctx, it)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.def
	if q := s.byID[it.ID]; len(q) > 0 {
		r, s.byID[it.ID] = q[0], q[1:]
	} else if q := s.byKey[it.Key]; len(q) > 0 {
		r, s.byKey[it.Key] = q[0], q[1:]
	}
	if hooked != nil {
		r = *hooked
	}
	s.calls = append(s.calls, Call{Item: it, Result: r})
	s.notify()
	return r
}

// Probe implements outbox.Sender.
func (s *Sender) Probe(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.probes++
	err := s.probeDef
	if len(s.probe) > 0 {
		err, s.probe = s.probe[0], s.probe[1:]
	}
	s.notify()
	return err
}

func (s *Sender) notify() {
	close(s.change)
	s.change = make(chan struct{})
}

// Calls returns every Send so far, in order.
func (s *Sender) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallsFor returns the Sends of one key, in order.
func (s *Sender) CallsFor(key string) []Call {
	var out []Call
	for _, c := range s.Calls() {
		if c.Item.Key == key {
			out = append(out, c)
		}
	}
	return out
}

// Probes returns how many probes ran.
func (s *Sender) Probes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.probes
}

// ErrTimeout is returned by the Wait methods when ctx ends first.
var ErrTimeout = errors.New("outboxtest: condition not met before the context ended")

// WaitCalls waits until at least n Sends happened.
func (s *Sender) WaitCalls(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return len(s.calls) >= n })
}

// WaitProbes waits until at least n probes ran.
func (s *Sender) WaitProbes(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return s.probes >= n })
}

func (s *Sender) wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok, ch := cond(), s.change
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ErrTimeout
		}
	}
}
