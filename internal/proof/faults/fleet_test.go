package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/clock"
	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// The fleet: N real outboxes (one bbolt file each) on one injected clock,
// all offline with pending items, and one counting server. Every agent's
// Sender and Probe reach that server; while it is down they fail as a
// refused connection does, afterwards each request is counted in the
// virtual second it arrives in.

const fleetItems = 3 // pending records per agent, on different keys

// fleetSize is TPOSAGENT_FLEET, else 2000 (500 under -race, 300 with
// -short).
func fleetSize(t *testing.T) int {
	if s := os.Getenv("TPOSAGENT_FLEET"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("TPOSAGENT_FLEET=%q: want a positive number", s)
		}
		return n
	}
	switch {
	case testing.Short():
		return 300
	case raceEnabled:
		return 500
	}
	return 2000
}

// fleetDir is where the fleet's bbolt files go: a directory on /dev/shm
// when there is one (a RAM filesystem: the test measures time on the
// virtual clock, and thousands of fsyncs on a shared disk would only make
// it slow), else t.TempDir(). TPOSAGENT_FLEET_DIR overrides.
func fleetDir(t *testing.T) string {
	base := os.Getenv("TPOSAGENT_FLEET_DIR")
	if base == "" {
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			base = "/dev/shm"
		}
	}
	if base == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(base, "tposagent-fleet-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// longFleetSize is TPOSAGENT_FLEET_LONG, else 300 (100 under -race): the
// long-outage scenario steps through more than five virtual minutes of
// drain.
func longFleetSize(t *testing.T) int {
	if s := os.Getenv("TPOSAGENT_FLEET_LONG"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("TPOSAGENT_FLEET_LONG=%q: want a positive number", s)
		}
		return n
	}
	if raceEnabled {
		return 100
	}
	return 300
}

// agentClock is one agent's view of the shared clock: it remembers the
// timer the agent's queue armed last, so that the test knows when that
// queue is idle (waiting for a timer in the future).
type agentClock struct {
	shared *clocktest.Clock
	mu     sync.Mutex
	cur    *agentTimer
}

type agentTimer struct {
	clock.Timer
	at time.Time
	c  *agentClock
}

func (c *agentClock) Now() time.Time { return c.shared.Now() }

func (c *agentClock) NewTimer(d time.Duration) clock.Timer {
	// The deadline comes from the timer itself: Now read here and the
	// timer made a moment later can be apart when the test steps the
	// shared clock in between, and then the test would wait for an agent
	// whose timer it believes has fired.
	st := c.shared.NewTimer(d)
	t := &agentTimer{Timer: st, at: st.(interface{ When() time.Time }).When(), c: c}
	c.mu.Lock()
	c.cur = t
	c.mu.Unlock()
	return t
}

func (t *agentTimer) Stop() bool {
	ok := t.Timer.Stop()
	t.c.mu.Lock()
	if t.c.cur == t {
		t.c.cur = nil
	}
	t.c.mu.Unlock()
	return ok
}

// armedAfter: the queue waits for a timer later than now.
func (c *agentClock) armedAfter(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil && c.cur.at.After(now)
}

func (c *agentClock) describe(now time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return "none armed"
	}
	return fmt.Sprintf("armed for %v (now %v)", c.cur.at.Sub(now), now)
}

// outboxStacks is the stacks of the goroutines in the outbox package
// that are not idle in the loop's select (where a stalled queue is
// blocked, if it is).
func outboxStacks() string {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "/outbox.") && !strings.Contains(g, "[select]") && !strings.Contains(g, "[chan receive]") {
			out = append(out, g)
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("… %d more", len(out)-20))
	}
	return strings.Join(out, "\n\n")
}

// fleetServer counts what arrives once it is up.
type fleetServer struct {
	clock *clocktest.Clock
	upAt  time.Time

	mu        sync.Mutex
	perSecond map[int64]int // every request: probes and record sends
	sendsPer  map[int64]int // record sends only
	sends     int
	probes    int
	last      time.Time
}

var errRefused = errors.New("dial tcp 10.0.0.1:443: connect: connection refused")

// arrive reports whether the server is up now and counts the request.
func (s *fleetServer) arrive(probe bool) bool {
	now := s.clock.Now()
	if now.Before(s.upAt) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := int64(now.Sub(s.upAt) / time.Second)
	s.perSecond[sec]++
	if probe {
		s.probes++
	} else {
		s.sends++
		s.sendsPer[sec]++
	}
	if now.After(s.last) {
		s.last = now
	}
	return true
}

func (s *fleetServer) peak(m map[int64]int) (peak int, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sec, n := range m {
		if n > peak || (n == peak && sec < at) {
			peak, at = n, sec
		}
	}
	return peak, at
}

type fleetAgent struct {
	q      *outbox.Queue
	log    *testrig.Buffer // the queue's log, shown when it does not settle
	clk    *agentClock
	srv    *fleetServer
	active atomic.Int64
	probes atomic.Int64
	sent   atomic.Int64 // delivered sends
}

func (a *fleetAgent) Send(ctx context.Context, it outbox.Item) outbox.Result {
	a.active.Add(1)
	defer a.active.Add(-1)
	if !a.srv.arrive(false) {
		return outbox.Result{Verdict: outbox.Retry, Reason: errRefused.Error()}
	}
	a.sent.Add(1)
	return outbox.Result{Verdict: outbox.Delivered}
}

func (a *fleetAgent) Probe(ctx context.Context) error {
	a.active.Add(1)
	defer a.active.Add(-1)
	defer a.probes.Add(1)
	if !a.srv.arrive(true) {
		return errRefused
	}
	return nil
}

// settled: nothing running, every result applied, and the queue either
// empty or waiting for a timer in the future.
func (a *fleetAgent) settled(now time.Time) bool {
	if a.active.Load() != 0 {
		return false
	}
	st, err := a.q.Stats()
	if err != nil || st.InFlight != 0 {
		return false
	}
	return st.Pending == 0 || a.clk.armedAfter(now)
}

type fleet struct {
	t      *testing.T
	clock  *clocktest.Clock
	srv    *fleetServer
	agents []*fleetAgent
	start  time.Time
	close  func() // stops and closes every agent; once
}

// newFleet opens n outboxes with items and runs them, all offline.
func newFleet(t *testing.T, n int, jitter, outage time.Duration) *fleet {
	t.Helper()
	clock := clocktest.New(time.Time{})
	f := &fleet{t: t, clock: clock, start: clock.Now(),
		srv: &fleetServer{clock: clock, upAt: clock.Now().Add(outage), perSecond: map[int64]int{}, sendsPer: map[int64]int{}}}
	dir := fleetDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	f.close = sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		for _, a := range f.agents {
			a.q.Close()
		}
	})
	t.Cleanup(f.close)
	for i := range n {
		rng := rand.New(rand.NewPCG(uint64(i), 0x7a11))
		var rmu sync.Mutex
		a := &fleetAgent{clk: &agentClock{shared: clock}, srv: f.srv, log: &testrig.Buffer{}}
		q, err := outbox.Open(outbox.Options{
			Path:            filepath.Join(dir, fmt.Sprintf("agent-%04d.db", i)),
			RetryBase:       time.Second,
			RetryMax:        5 * time.Minute, // the production default
			ReconnectJitter: jitter,
			StopGrace:       time.Second,
			CheckMaxSize:    -1,
			Clock:           a.clk,
			Logger:          slog.New(slog.NewTextHandler(a.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Rand: func() float64 {
				rmu.Lock()
				defer rmu.Unlock()
				return rng.Float64()
			},
		})
		if err != nil {
			t.Fatalf("open outbox %d: %v", i, err)
		}
		a.q = q
		f.agents = append(f.agents, a)
		// Enqueue concurrently: one commit for the lot.
		var ewg sync.WaitGroup
		for k := range fleetItems {
			ewg.Add(1)
			go func() {
				defer ewg.Done()
				p, _ := json.Marshal(map[string]any{"integration_id": fmt.Sprintf("a%d-k%d", i, k), "code": "Ş"})
				if _, err := q.Enqueue(ctx, outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprintf("special_code:a%d-k%d", i, k), Payload: p}); err != nil {
					t.Errorf("enqueue: %v", err)
				}
			}()
		}
		ewg.Wait()
	}
	for _, a := range f.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.q.Run(ctx, a); err != nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	// Every queue probes once at start (the server is down), at the end of
	// its start hold, a random part of the jitter (a probe
	// nobody asked for waits it, the one at start too): let the clock pass
	// the jitter, wait for those probes, then for the queues to settle
	// offline.
	if jitter > 0 {
		f.waitAll("start timers", func(a *fleetAgent) bool {
			a.clk.mu.Lock()
			defer a.clk.mu.Unlock()
			return a.clk.cur != nil
		})
		f.step(f.start.Add(jitter))
	}
	f.waitAll("start probes", func(a *fleetAgent) bool { return a.probes.Load() > 0 })
	f.settle(f.all())
	return f
}

func (f *fleet) all() []*fleetAgent { return append([]*fleetAgent(nil), f.agents...) }

func (f *fleet) waitAll(what string, cond func(*fleetAgent) bool) {
	f.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for _, a := range f.agents {
		for !cond(a) {
			if time.Now().After(deadline) {
				f.t.Fatalf("fleet: timed out waiting for %s", what)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
}

// settle waits until every agent of some is settled.
func (f *fleet) settle(some []*fleetAgent) {
	f.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for len(some) > 0 {
		now := f.clock.Now()
		rest := some[:0]
		for _, a := range some {
			if !a.settled(now) {
				rest = append(rest, a)
			}
		}
		some = rest
		if len(some) > 0 {
			if time.Now().After(deadline) {
				st, _ := some[0].q.Stats()
				f.t.Logf("the first unsettled agent's log:\n%s", some[0].log.String())
				f.t.Logf("its timer: %s", some[0].clk.describe(now))
				f.t.Logf("outbox goroutines:\n%s", outboxStacks())
				f.t.Fatalf("fleet: %d agents did not settle at +%v (first: active %d, stats %+v)",
					len(some), now.Sub(f.start), some[0].active.Load(), st)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// step moves the clock to t and waits for the agents whose timer fired.
func (f *fleet) step(t time.Time) {
	var woken []*fleetAgent
	for _, a := range f.agents {
		a.clk.mu.Lock()
		if a.clk.cur != nil && !a.clk.cur.at.After(t) {
			woken = append(woken, a)
		}
		a.clk.mu.Unlock()
	}
	f.clock.Set(t)
	f.settle(woken)
}

func (f *fleet) drained() bool {
	for _, a := range f.agents {
		if a.sent.Load() < fleetItems {
			return false
		}
	}
	return true
}

// reconnect runs the outage to its end and then the drain; with kick,
// every agent learns at once that the network is back (Kick: an offline
// queue probes now). The figures are in f.srv afterwards.
func (f *fleet) reconnect(kick bool) {
	f.t.Helper()
	// The outage, in coarse steps: every queue stays offline and backs
	// its probes off.
	last := f.srv.upAt.Add(-time.Millisecond)
	for t := f.clock.Now(); t.Before(last); {
		t = t.Add(10 * time.Second)
		if t.After(last) {
			t = last
		}
		f.step(t)
	}
	for _, a := range f.agents {
		if st, _ := a.q.Stats(); st.Online || st.Pending != fleetItems {
			f.t.Fatalf("at the end of the outage an agent is online or lost items: %+v", st)
		}
	}
	f.step(f.srv.upAt)
	if kick {
		// A kick is a hint, not a person's request: the queue probes
		// after a random part of the reconnect jitter (at once without
		// one). Wait until every queue has taken it: its log says so, or
		// it probed (as a kick did at once before probes were jittered).
		before := make([]int, len(f.agents))
		probes := make([]int64, len(f.agents))
		for i, a := range f.agents {
			before[i], probes[i] = strings.Count(a.log.String(), "outbox kick"), a.probes.Load()
			a.q.Kick()
		}
		taken := func(i int, a *fleetAgent) bool {
			return strings.Count(a.log.String(), "outbox kick") > before[i] || a.probes.Load() > probes[i]
		}
		for i, a := range f.agents {
			for deadline := time.Now().Add(time.Minute); !taken(i, a); time.Sleep(100 * time.Microsecond) {
				if time.Now().After(deadline) {
					f.t.Fatalf("agent %d did not take the Kick", i)
				}
			}
		}
		f.settle(f.all())
	}
	// The drain, from timer to timer in steps of at least a quarter of a
	// second (the figures are per second; finer steps only cost time).
	const quantum = 250 * time.Millisecond
	for !f.drained() {
		next, ok := f.clock.Next()
		if !ok {
			f.t.Fatalf("fleet idle at +%v with work left", f.clock.Now().Sub(f.start))
		}
		if min := f.clock.Now().Add(quantum); next.Before(min) {
			next = min
		}
		if next.Sub(f.srv.upAt) > time.Hour {
			f.t.Fatalf("fleet not drained an hour after the server came back")
		}
		f.step(next)
	}
}

// TestFleetReconnect: 2,000 agents whose server comes back after an
// outage. When they learn of it at once, the reconnect jitter must cut
// the peak of requests per second at least tenfold: of record requests,
// and of all requests with the probes counted (a kick's probe waits the
// jitter too, so the fleet does not probe in one second).
func TestFleetReconnect(t *testing.T) {
	n := fleetSize(t)
	type run struct {
		peakSends, peakAll     int // per virtual second
		peakSendsAt, peakAllAt int64
		drain                  time.Duration
	}
	measure := func(t *testing.T, n int, jitter, outage time.Duration, kick bool) run {
		began := time.Now()
		f := newFleet(t, n, jitter, outage)
		// Closed before the next fleet opens: under wine all the fleet's
		// handles count against the wineserver's one fd limit.
		defer f.close()
		opened := time.Since(began)
		f.reconnect(kick)
		var r run
		r.peakSends, r.peakSendsAt = f.srv.peak(f.srv.sendsPer)
		r.peakAll, r.peakAllAt = f.srv.peak(f.srv.perSecond)
		r.drain = f.srv.last.Sub(f.srv.upAt)
		if want := n * fleetItems; f.srv.sends != want {
			t.Errorf("%d records delivered, want %d", f.srv.sends, want)
		}
		t.Logf("fleet=%d jitter=%v outage=%v kick=%v: peak %d record req/s (+%ds), %d req/s with probes (+%ds); %d sends, %d probes; drained in %v (open %v, run %v real)",
			n, jitter, outage, kick, r.peakSends, r.peakSendsAt, r.peakAll, r.peakAllAt, f.srv.sends, f.srv.probes,
			r.drain.Round(time.Millisecond), opened.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
		return r
	}
	ratio := func(a, b int) float64 { return float64(a) / float64(max(b, 1)) }

	// All agents learn at once that the server is back (every queue is
	// kicked at T): the stampede the reconnect jitter is for.
	t.Run("at-once", func(t *testing.T) {
		noJ := measure(t, n, 0, time.Minute, true)
		withJ := measure(t, n, 30*time.Second, time.Minute, true)
		t.Logf("RESULT fleet=%d peak_no_jitter=%d peak_jitter=%d ratio=%.1f (record requests/s) with_probes_no_jitter=%d with_probes_jitter=%d with_probes_ratio=%.1f drain_no_jitter=%v drain_jitter=%v",
			n, noJ.peakSends, withJ.peakSends, ratio(noJ.peakSends, withJ.peakSends),
			noJ.peakAll, withJ.peakAll, ratio(noJ.peakAll, withJ.peakAll), noJ.drain.Round(time.Millisecond), withJ.drain.Round(time.Millisecond))
		if r := ratio(noJ.peakSends, withJ.peakSends); r < 10 {
			t.Errorf("jittered peak %d record requests/s is only %.1f× lower than %d, want at least 10×", withJ.peakSends, r, noJ.peakSends)
		}
		if r := ratio(noJ.peakAll, withJ.peakAll); r < 10 {
			t.Errorf("jittered peak %d requests/s with probes is only %.1f× lower than %d, want at least 10×", withJ.peakAll, r, noJ.peakAll)
		}
		if noJ.drain > time.Second {
			t.Errorf("without jitter the kicked fleet took %v to drain, want at once", noJ.drain)
		}
		if withJ.drain > 31*time.Second {
			t.Errorf("the jittered fleet took %v to drain, want within the 30 s jitter", withJ.drain)
		}
	})
	// A long outage: each queue finds the server with its own probe, on
	// a backoff that is itself jittered and capped at retry_max (5m), so
	// the fleet is spread out before the reconnect jitter adds anything.
	t.Run("probe-after-long-outage", func(t *testing.T) {
		if testing.Short() {
			t.Skip("long outage: not with -short")
		}
		n := longFleetSize(t)
		noJ := measure(t, n, 0, 10*time.Minute, false)
		withJ := measure(t, n, 30*time.Second, 10*time.Minute, false)
		t.Logf("RESULT fleet=%d outage=10m discovery=probe peak_no_jitter=%d peak_jitter=%d ratio=%.1f (record requests/s) with_probes_no_jitter=%d with_probes_jitter=%d drain_no_jitter=%v drain_jitter=%v",
			n, noJ.peakSends, withJ.peakSends, ratio(noJ.peakSends, withJ.peakSends), noJ.peakAll, withJ.peakAll,
			noJ.drain.Round(time.Millisecond), withJ.drain.Round(time.Millisecond))
		// Spread by the probe backoff alone: no second holds more than a
		// tenth of the fleet's records.
		if noJ.peakSends > n*fleetItems/10 {
			t.Errorf("after a long outage %d record requests arrived in one second", noJ.peakSends)
		}
	})
}
