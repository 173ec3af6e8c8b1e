// Package outboxtest provides a scripted outbox.Sender for testing code
// that uses the outbox (the manual clock is internal/clock/clocktest).
package outboxtest

import (
	"context"
	"errors"
	"sync"

	"github.com/tposagent/tposagent/outbox"
)

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
