package clocktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/clock"
	"github.com/tposagent/tposagent/internal/clock/clocktest"
)

func TestClockFiresInOrderAndStops(t *testing.T) {
	c := clocktest.New(time.Time{})
	start := c.Now()
	t2 := c.NewTimer(2 * time.Second)
	t1 := c.NewTimer(time.Second)
	t3 := c.NewTimer(3 * time.Second)
	if err := c.BlockUntil(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	if !t3.Stop() || t3.Stop() {
		t.Fatal("Stop should report true once")
	}
	c.Advance(2 * time.Second)
	for i, tm := range []clock.Timer{t1, t2} {
		select {
		case at := <-tm.C():
			if !at.Equal(start.Add(2 * time.Second)) {
				t.Errorf("timer %d fired at %v", i, at)
			}
		default:
			t.Fatalf("timer %d did not fire", i)
		}
	}
	if c.Pending() != 0 {
		t.Fatalf("pending %d", c.Pending())
	}
	select {
	case <-c.NewTimer(0).C():
	default:
		t.Fatal("a zero timer must fire at once")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.BlockUntil(ctx, 1); err == nil {
		t.Fatal("BlockUntil ignored its context")
	}
}

// A wall clock set back (dead CMOS battery, NTP correction) changes Now
// but not how long a timer waits, as with the standard library's
// monotonic timers.
func TestClockJumpsBackWithoutFiringOrStallingTimers(t *testing.T) {
	c := clocktest.New(time.Time{})
	start := c.Now()
	tm := c.NewTimer(200 * time.Millisecond)
	c.Jump(-365 * 24 * time.Hour)
	if got := c.Now(); !got.Equal(start.Add(-365 * 24 * time.Hour)) {
		t.Fatalf("Now after jumping back a year = %v, want %v", got, start.Add(-365*24*time.Hour))
	}
	next, ok := c.Next()
	if want := c.Now().Add(200 * time.Millisecond); !ok || !next.Equal(want) {
		t.Fatalf("Next = %v %v, want %v on the new wall clock", next, ok, want)
	}
	select {
	case <-tm.C():
		t.Fatal("a jump must not fire a timer")
	default:
	}
	c.Advance(200 * time.Millisecond)
	select {
	case at := <-tm.C():
		if want := start.Add(-365*24*time.Hour + 200*time.Millisecond); !at.Equal(want) {
			t.Fatalf("fired at %v, want %v", at, want)
		}
	default:
		t.Fatal("the timer did not fire after its duration once the clock had gone back")
	}
	// Set to an earlier time is a jump too; to a later one lets time pass.
	before := c.Now()
	c.Set(before.Add(-time.Hour))
	if got := c.Now(); !got.Equal(before.Add(-time.Hour)) {
		t.Fatalf("Set backwards: Now = %v", got)
	}
	tm2 := c.NewTimer(time.Minute)
	c.Set(c.Now().Add(time.Minute))
	select {
	case <-tm2.C():
	default:
		t.Fatal("Set forward did not let the timer's minute pass")
	}
}

// TestTimerWhenIsItsOwnDeadline: When is fixed when the timer is made and
// follows the wall clock's jumps, whatever Now says later.
func TestTimerWhenIsItsOwnDeadline(t *testing.T) {
	c := clocktest.New(time.Time{})
	start := c.Now()
	tm := c.NewTimer(3 * time.Second).(interface{ When() time.Time })
	c.Advance(time.Second)
	if got := tm.When(); !got.Equal(start.Add(3 * time.Second)) {
		t.Fatalf("When %v, want %v", got, start.Add(3*time.Second))
	}
	c.Jump(-time.Hour)
	if got := tm.When(); !got.Equal(start.Add(3*time.Second - time.Hour)) {
		t.Fatalf("after a jump back: When %v, want %v", got, start.Add(3*time.Second-time.Hour))
	}
}
