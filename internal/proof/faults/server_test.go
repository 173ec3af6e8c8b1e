package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/records"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/outbox"
)

// The queue's timing in the matrix. Rand is fixed at 0.5, so the full
// jitter backoff of attempt n is exactly half its cap:
// 0.5 * min(retryMax, retryBase * 2^(n-1)).
const (
	retryBase       = time.Second
	retryMax        = 4 * time.Second
	reconnectJitter = 30 * time.Second
	jitterRand      = 0.5
	startHold       = time.Duration(jitterRand * float64(reconnectJitter)) // first send after Run starts
)

// record is one record the POS application handed over.
type record struct {
	kind   outbox.Kind
	column string // as the POS sends it
	name   string // for messages: "kasa 1", "code S-1#2"
	reject string // the id the server rejects it by ("" = accepted)
}

// matrixRecords: five keys, one of them (special code S-1) with two
// records that must arrive in order.
var matrixRecords = []record{
	{kind: outbox.KindKasa, column: `{"id":1,"status":"1","balance":"1.260,50","note":"Kadıköy şube"}`, name: "kasa 1"},
	{kind: outbox.KindKasa, column: `{"id":2,"status":"1","price":"100","description":"MERKEZ KASA"}`, name: "kasa 2", reject: "2"},
	{kind: outbox.KindKasa, column: `{"integration_id":"K-3","balance":"0"}`, name: "kasa K-3"},
	{kind: outbox.KindSpecialCode, column: `{"integration_id":"S-1","code":"ĞÜŞ-A","status":"1"}`, name: "code S-1#1"},
	{kind: outbox.KindSpecialCode, column: `{"integration_id":"S-1","code":"ĞÜŞ-B","status":"1"}`, name: "code S-1#2"},
	{kind: outbox.KindSpecialCode, column: `{"integration_id":"S-2","code":"İ2"}`, name: "code S-2", reject: "S-2"},
}

// sendEvent is one Send as the server side of the outbox saw it, on the
// injected clock.
type sendEvent struct {
	seq      int
	at       time.Time
	item     outbox.Item // as handed over: Attempts and NextAttempt of the previous failure
	result   outbox.Result
	pausedAt time.Time // the queue's published Retry-After pause when the send started
}

type probeEvent struct {
	at  time.Time
	err error
}

// recorder wraps the agent's real Sender and notes every Send and Probe
// with the time on the injected clock. It also counts calls in progress,
// so that the test moves the clock only when the queue is idle.
type recorder struct {
	inner  outbox.Sender
	clock  *clocktest.Clock
	q      func() *outbox.Queue
	active atomic.Int64

	mu     sync.Mutex
	sends  []sendEvent
	probes []probeEvent
}

var _ outbox.Sender = (*recorder)(nil)

func (r *recorder) Send(ctx context.Context, it outbox.Item) outbox.Result {
	r.active.Add(1)
	defer r.active.Add(-1)
	at := r.clock.Now()
	var paused time.Time
	if st, err := r.q().Stats(); err == nil {
		paused = st.PausedUntil
	}
	res := r.inner.Send(ctx, it)
	r.mu.Lock()
	r.sends = append(r.sends, sendEvent{seq: len(r.sends), at: at, item: it, result: res, pausedAt: paused})
	r.mu.Unlock()
	return res
}

func (r *recorder) Probe(ctx context.Context) error {
	r.active.Add(1)
	defer r.active.Add(-1)
	at := r.clock.Now()
	err := r.inner.Probe(ctx)
	r.mu.Lock()
	r.probes = append(r.probes, probeEvent{at: at, err: err})
	r.mu.Unlock()
	return err
}

func (r *recorder) snapshot() ([]sendEvent, []probeEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sendEvent(nil), r.sends...), append([]probeEvent(nil), r.probes...)
}

// matrixEnv is one row's world: fake server, client, queue, clock.
type matrixEnv struct {
	t     *testing.T
	clock *clocktest.Clock
	srv   *oduyotest.Server
	q     *outbox.Queue
	rec   *recorder
	ids   map[uint64]record // outbox id -> record
	start time.Time
}

func newMatrixEnv(t *testing.T, clientTimeout time.Duration) *matrixEnv {
	t.Helper()
	clock := clocktest.New(time.Time{})
	srv := oduyotest.NewServer(oduyotest.WithClock(clock.Now))
	t.Cleanup(srv.Close)
	client, err := oduyo.New(oduyo.Config{
		BaseURL: srv.URL(), APIKey: srv.APIKey, Username: srv.Username, Password: srv.Password,
		Timeout: clientTimeout, Now: clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	q, err := outbox.Open(outbox.Options{
		Path:            filepath.Join(t.TempDir(), "outbox.db"),
		Concurrency:     1, // one send at a time: the order of events is the order of the clock
		RetryBase:       retryBase,
		RetryMax:        retryMax,
		ReconnectJitter: reconnectJitter,
		StopGrace:       2 * time.Second,
		Clock:           clock,
		Rand:            func() float64 { return jitterRand },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	e := &matrixEnv{t: t, clock: clock, srv: srv, q: q, ids: map[uint64]record{}, start: clock.Now()}
	e.rec = &recorder{inner: agent.NewSender(client), clock: clock, q: func() *outbox.Queue { return q }}
	for _, r := range matrixRecords {
		normalize := records.NormalizeKasa
		if r.kind == outbox.KindSpecialCode {
			normalize = records.NormalizeSpecialCode
		}
		col, key, err := normalize([]byte(r.column))
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		// Coalesce is off: two updates of one card would merge, and the
		// matrix wants every record on the wire.
		it, err := q.Enqueue(context.Background(), outbox.Entry{Kind: r.kind, Key: key, Payload: col})
		if err != nil {
			t.Fatalf("enqueue %s: %v", r.name, err)
		}
		e.ids[it.ID] = r
	}
	return e
}

// run starts the queue. Unless the server is down from the start (then
// the start probe fails and the reconnect sets its own hold), it lets the
// injected clock pass the start hold.
func (e *matrixEnv) run(downAtStart bool) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.q.Run(ctx, e.rec) }()
	// Run has started when it has armed the timer of its start hold (its
	// first probe waits that hold too since every probe nobody asked for waits the jitter, so no probe tells
	// any more).
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer bcancel()
	if err := e.clock.BlockUntil(bctx, 1); err != nil {
		e.t.Fatalf("outbox Run did not start: %v", err)
	}
	// A start is a reconnect: the queue holds its first send back by the
	// reconnect jitter. Let the injected clock pass it.
	if !downAtStart {
		e.clock.Advance(startHold)
	}
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("outbox run: %v", err)
			}
		case <-time.After(15 * time.Second):
			e.t.Errorf("outbox run did not stop")
		}
	})
}

func (e *matrixEnv) stats() outbox.Stats {
	st, err := e.q.Stats()
	if err != nil {
		e.t.Fatalf("stats: %v", err)
	}
	return st
}

// barrier returns after the queue's loop has handled a request sent now:
// everything it was doing before (applying a result, re-arming its timer)
// is finished. Drop of an id that cannot exist goes through the loop.
func (e *matrixEnv) barrier() {
	if err := e.q.Drop(math.MaxUint64); !errors.Is(err, outbox.ErrNotFound) {
		e.t.Fatalf("barrier: %v", err)
	}
}

// settle waits (polling, with a real-time deadline) until no send or probe
// is running and the queue has applied every result.
func (e *matrixEnv) settle() {
	deadline := time.Now().Add(30 * time.Second)
	for {
		for e.rec.active.Load() > 0 || e.stats().InFlight > 0 {
			if time.Now().After(deadline) {
				e.t.Fatalf("queue did not settle within 30 s (active %d)", e.rec.active.Load())
			}
			time.Sleep(200 * time.Microsecond)
		}
		// Two requests through the loop: after the second, the loop has
		// run a whole turn (tick: dispatch, timer) after the first. The
		// state must not have moved meanwhile.
		before := e.idleState()
		e.barrier()
		e.barrier()
		// In flight counts too: a send dispatched between the wait above
		// and before is still to come (its worker has not called Send).
		if after := e.idleState(); e.rec.active.Load() == 0 && after == before && after.inFlight == 0 && e.applied() {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("queue did not apply its last results within 30 s")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// applied: every failed send's result is in the file (the item's stored
// attempts count it), no due record waits for its dispatch, and the
// timer is the earliest record's. An online queue arms a timer for
// the jittered probe after a failure before it has stored the failure's
// backoff; without this check the clock could jump to that probe first
// and the backoff would be counted from there.
func (e *matrixEnv) applied() bool {
	sends, _ := e.rec.snapshot()
	last := map[uint64]sendEvent{}
	for _, s := range sends {
		last[s.item.ID] = s
	}
	for id, s := range last {
		if s.result.Verdict != outbox.Retry {
			continue
		}
		it, state, err := e.q.Get(id)
		if err != nil {
			continue // dropped or gone: nothing to wait for
		}
		if state == outbox.Pending && it.Attempts <= s.item.Attempts {
			return false
		}
	}
	// An online queue's timer is for its earliest due record, not a later
	// probe: the loop has re-armed it after the last commit.
	st := e.stats()
	now := e.clock.Now()
	if st.Offline || now.Before(st.PausedUntil) {
		return true
	}
	items, err := e.q.List(outbox.Pending, 1000)
	if err != nil {
		return false
	}
	heads := map[string]uint64{}
	for _, it := range items {
		if h, ok := heads[it.Key]; !ok || it.ID < h {
			heads[it.Key] = it.ID
		}
	}
	var due time.Time
	for _, it := range items {
		if heads[it.Key] != it.ID {
			continue
		}
		// From the end of the start hold on (that instant included: the
		// start's probe runs then, and until its goroutine reaches the
		// recorder nothing shows it), a due record not in flight means
		// the loop has a probe or a dispatch to make. With ">" the clock
		// could move on at the hold's end while the first sends were
		// about to fail, and their backoff was counted from the next
		// timer (+30 s instead of +15 s; once under wine).
		if !it.InFlight && !it.NextAttempt.After(now) && now.Sub(e.start) >= startHold {
			return false // due and not yet sent: the loop has a dispatch to make
		}
		if !it.InFlight && it.NextAttempt.After(now) && (due.IsZero() || it.NextAttempt.Before(due)) {
			due = it.NextAttempt
		}
	}
	next, ok := e.clock.Next()
	return due.IsZero() || (ok && !next.After(due))
}

// idleState is what must stay still while the queue is idle.
type idleState struct {
	sends, probes, pending, inFlight int
	next                             time.Time
}

func (e *matrixEnv) idleState() idleState {
	sends, probes := e.rec.snapshot()
	st := e.stats()
	next, _ := e.clock.Next()
	return idleState{sends: len(sends), probes: len(probes), pending: st.Pending, inFlight: st.InFlight, next: next}
}

// done: nothing pending, every record either delivered or dead.
func (e *matrixEnv) done() bool {
	st := e.stats()
	return st.Pending == 0 && st.InFlight == 0
}

// drive moves the injected clock from timer to timer until the queue is
// done; at clearAt (virtual, from the start) it calls clear once.
func (e *matrixEnv) drive(clearAt time.Duration, clear func()) {
	e.t.Helper()
	cleared := clear == nil
	for step := 0; ; step++ {
		if step > 2000 {
			e.t.Fatalf("not done after %d clock steps (virtual %v)", step, e.clock.Now().Sub(e.start))
		}
		e.settle()
		if !cleared && e.clock.Now().Sub(e.start) >= clearAt {
			clear()
			cleared = true
		}
		if cleared && e.done() {
			return
		}
		next, ok := e.clock.Next()
		if !ok {
			// A probe result may still be on its way to the loop.
			wait := time.Now().Add(5 * time.Second)
			for !ok && time.Now().Before(wait) {
				time.Sleep(time.Millisecond)
				e.settle()
				next, ok = e.clock.Next()
			}
			if !ok {
				if cleared && e.done() {
					return
				}
				e.t.Fatalf("queue idle with work left and no timer (virtual %v, stats %+v)", e.clock.Now().Sub(e.start), e.stats())
			}
		}
		if !cleared && next.Sub(e.start) > clearAt {
			next = e.start.Add(clearAt)
		}
		e.clock.Set(next)
	}
}

// expectedDelay is the outbox's backoff after the n-th failed attempt with
// the fixed Rand, or the server's Retry-After when longer.
func expectedDelay(n int, retryAfter time.Duration) time.Duration {
	c := retryBase
	for i := 1; i < n && c < retryMax; i++ {
		c *= 2
	}
	d := time.Duration(jitterRand * float64(min(c, retryMax)))
	return max(d, retryAfter)
}

type matrixRow struct {
	name          string
	clientTimeout time.Duration
	setup         func(e *matrixEnv)
	clearAt       time.Duration // virtual time after the start at which clear runs
	clear         func(e *matrixEnv)
	permanent     bool          // the rejected records go to the dead letters
	retryAfter    time.Duration // the pause the server asked for (0: none)
	offline       bool          // the server is unreachable: probes and the reconnect jitter apply
	minLogins     int
	noFailure     bool   // the answers are odd but successes: nothing is retried
	allDead       string // every record is dead-lettered with a reason containing this
	lookups       bool   // special codes whose answer was lost are looked up, never sent twice
	// kasaID: the kasa card without an id ("kasa K-3") arrives with this
	// id, found by a lookup after Ödüyo refused it for want of one.
	kasaID string
}

func TestServerFaultMatrix(t *testing.T) {
	fail := func(n int, f oduyotest.Fault) func(*matrixEnv) {
		return func(e *matrixEnv) { e.srv.FailNext(n, f) }
	}
	rows := []matrixRow{
		{name: "down", setup: func(e *matrixEnv) { e.srv.SetDown(true) }, clearAt: 2 * time.Minute,
			clear: func(e *matrixEnv) { e.srv.SetDown(false) }, offline: true},
		{name: "http500", setup: fail(20, oduyotest.Fault{Status: 500})},
		{name: "http502", setup: fail(6, oduyotest.Fault{Status: 502})},
		{name: "http503", setup: fail(6, oduyotest.Fault{Status: 503})},
		{name: "http504", setup: fail(6, oduyotest.Fault{Status: 504})},
		{name: "http503-retry-after-30", setup: fail(1, oduyotest.Fault{Status: 503, RetryAfter: "30"}), retryAfter: 30 * time.Second},
		{name: "http429-retry-after-seconds", setup: fail(1, oduyotest.Fault{Status: 429, RetryAfter: "120"}), retryAfter: 120 * time.Second},
		{name: "http429-retry-after-date", setup: func(e *matrixEnv) {
			// The date is read when the first send happens: after the start hold.
			e.srv.FailNext(1, oduyotest.Fault{Status: 429, RetryAfter: e.clock.Now().Add(startHold + 120*time.Second).UTC().Format(http.TimeFormat)})
		}, retryAfter: 120 * time.Second},
		{name: "http408", setup: fail(6, oduyotest.Fault{Status: 408})},
		{name: "slow-beyond-timeout", clientTimeout: 300 * time.Millisecond, setup: fail(3, oduyotest.Fault{Delay: 10 * time.Second})},
		{name: "connection-reset", setup: fail(6, oduyotest.Fault{Reset: true})},
		{name: "html-error-page", setup: func(e *matrixEnv) {
			e.srv.FailNext(3, oduyotest.Fault{HTML: true})
			e.srv.FailNext(3, oduyotest.Fault{HTML: true, Status: 502})
		}},
		{name: "malformed-json", setup: fail(6, oduyotest.Fault{Malformed: true})},
		{name: "session-expiry-mid-drain", setup: func(e *matrixEnv) { e.srv.ExpireSessionsAfter(2) }, minLogins: 3},
		// The probe logs in (it checks that the answer is Ödüyo's), so the
		// failing logins keep the queue offline until one succeeds.
		{name: "login-http503", setup: func(e *matrixEnv) { e.srv.FailNextLogin(3, oduyotest.Fault{Status: 503}) }, offline: true},
		{name: "status-false", setup: func(e *matrixEnv) { e.srv.Reject("2", "S-2") }, permanent: true},
		// Only Ödüyo can reject a record: redirects, pages and JSON that is
		// not Ödüyo's leave the record waiting.
		{name: "http301", setup: fail(6, oduyotest.Fault{Status: 301, Redirect: "http://portal.example/login"})},
		{name: "http302", setup: fail(6, oduyotest.Fault{Status: 302, Redirect: "http://portal.example/login"})},
		{name: "http307", setup: fail(6, oduyotest.Fault{Status: 307, Redirect: "http://portal.example/login"})},
		{name: "http200-html", setup: fail(6, oduyotest.Fault{HTML: true})},
		{name: "http404-html", setup: fail(6, oduyotest.Fault{HTML: true, Status: 404})},
		{name: "status-string-true", setup: fail(6, oduyotest.Fault{Body: `{"status":"true","data":"ok"}`})},
		{name: "captive-portal", setup: func(e *matrixEnv) {
			e.srv.Intercept(&oduyotest.Fault{Status: 302, Redirect: "http://portal.example/login"})
		}, clearAt: 2 * time.Minute, clear: func(e *matrixEnv) { e.srv.Intercept(nil) }, offline: true},
		// A portal that answers every path with 200 and a text: the login
		// gets no session id and no JSON status, which is not Ödüyo's.
		{name: "captive-portal-200-text", setup: func(e *matrixEnv) {
			e.srv.Intercept(&oduyotest.Fault{Body: "Lütfen kullanım koşullarını kabul edin"})
		}, clearAt: 2 * time.Minute, clear: func(e *matrixEnv) { e.srv.Intercept(nil) }, offline: true},
		{name: "http201", setup: fail(6, oduyotest.Fault{Stored: true, Status: 201, Body: `{"status":true,"data":"ok"}`}), noFailure: true},
		{name: "http202", setup: fail(6, oduyotest.Fault{Stored: true, Status: 202, Body: `{"status":true}`}), noFailure: true},
		// A special code stored by the server whose answer was lost is
		// looked up, not created twice.
		{name: "create-stored-then-reset", setup: fail(2, oduyotest.Fault{Stored: true, Reset: true, Only: oduyotest.KindSpecialCode}), lookups: true},
		{name: "create-stored-then-timeout", clientTimeout: 300 * time.Millisecond,
			setup: fail(2, oduyotest.Fault{Stored: true, Delay: 10 * time.Second, Only: oduyotest.KindSpecialCode}), lookups: true},
		// One re-login per attempt; a 401 that survives it is the
		// credentials' fault.
		{name: "http401-after-login", setup: func(e *matrixEnv) { e.srv.FailAlways(oduyotest.Fault{Status: 401}) }, allDead: "credentials"},
		// A list call that ignores its filter: the lookups page through
		// the whole table (150 other codes) and check every row.
		{name: "list-ignores-filter", setup: func(e *matrixEnv) {
			e.srv.IgnoreListFilters(true)
			for i := range 150 {
				e.srv.AddSpecialCode(fmt.Sprint("OTHER-", i), fmt.Sprint("O", i))
			}
			e.srv.FailNext(2, oduyotest.Fault{Stored: true, Reset: true, Only: oduyotest.KindSpecialCode})
		}, lookups: true},
		// A kasa update without an id refused for want of one: the card is
		// looked up by its integration_id and the update sent once more
		// with its id, in the same attempt; also when the list ignores its
		// filter.
		{name: "kasa-refused-without-id", setup: func(e *matrixEnv) {
			e.srv.RequireKasaID(true)
			e.srv.AddKasaCard("3", "K-3")
		}, noFailure: true, lookups: true, kasaID: "3"},
		{name: "kasa-refused-without-id-list-ignores-filter", setup: func(e *matrixEnv) {
			e.srv.RequireKasaID(true)
			e.srv.IgnoreListFilters(true)
			for i := range 150 {
				e.srv.AddKasaCard(fmt.Sprint(1000+i), fmt.Sprint("OTHER-", i))
			}
			e.srv.AddKasaCard("3", "K-3")
		}, noFailure: true, lookups: true, kasaID: "3"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			timeout := row.clientTimeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			e := newMatrixEnv(t, timeout)
			row.setup(e)
			e.run(row.offline)
			var clear func()
			if row.clear != nil {
				clear = func() { row.clear(e) }
			}
			e.drive(row.clearAt, clear)
			checkMatrix(t, e, row)
		})
	}
}

// checkMatrix asserts what the docs promise for the row and logs its
// figures.
func checkMatrix(t *testing.T, e *matrixEnv, row matrixRow) {
	sends, probes := e.rec.snapshot()
	st := e.stats()

	// Classification and nothing lost.
	delivered := e.srv.Delivered()
	byKey := map[string]oduyotest.Delivery{}
	dups := 0
	for _, d := range delivered {
		if d.Duplicate {
			dups++
		}
		byKey[d.IdempotencyKey] = d
	}
	if dups != 0 {
		t.Errorf("%d duplicate deliveries (no fault of the matrix lets the server process a record it did not answer)", dups)
	}
	dead, err := e.q.List(outbox.Dead, 0)
	if err != nil {
		t.Fatal(err)
	}
	deadIDs := map[uint64]outbox.Item{}
	for _, it := range dead {
		deadIDs[it.ID] = it
	}
	firstSend := map[uint64]sendEvent{}
	for _, s := range sends {
		if _, ok := firstSend[s.item.ID]; !ok {
			firstSend[s.item.ID] = s
		}
	}
	wantDead := 0
	for id, r := range e.ids {
		s, sent := firstSend[id]
		if !sent {
			t.Errorf("%s was never sent", r.name)
			continue
		}
		d, got := byKey[s.item.IdempotencyKey]
		if row.allDead != "" {
			wantDead++
			it, isDead := deadIDs[id]
			switch {
			case got:
				t.Errorf("%s shows as delivered", r.name)
			case !isDead:
				t.Errorf("%s: not in the dead letters", r.name)
			case !strings.Contains(it.DeadReason, row.allDead):
				t.Errorf("%s: dead reason %q, want one naming %q", r.name, it.DeadReason, row.allDead)
			}
			continue
		}
		if row.permanent && r.reject != "" {
			wantDead++
			it, isDead := deadIDs[id]
			switch {
			case got:
				t.Errorf("%s was rejected by the server but shows as delivered", r.name)
			case !isDead:
				t.Errorf("%s: rejected by the server, not in the dead letters", r.name)
			case !strings.Contains(it.DeadReason, "status") || it.DeadAt.IsZero():
				t.Errorf("%s: dead reason %q at %v, want the server's refusal", r.name, it.DeadReason, it.DeadAt)
			}
			continue
		}
		if !got {
			t.Errorf("LOST: %s never reached the server", r.name)
			continue
		}
		if _, isDead := deadIDs[id]; isDead {
			t.Errorf("%s delivered and dead", r.name)
		}
		var want, have map[string]any
		json.Unmarshal(s.item.Payload, &want)
		json.Unmarshal(d.Column, &have)
		if row.kasaID != "" && r.name == "kasa K-3" {
			if _, had := want["id"]; had || fmt.Sprint(have["id"]) != row.kasaID {
				t.Errorf("%s arrived with id %v, want %s found by its integration_id", r.name, have["id"], row.kasaID)
			}
			delete(have, "id")
		}
		if fmt.Sprint(want) != fmt.Sprint(have) {
			t.Errorf("%s arrived as %s, sent %s", r.name, d.Column, s.item.Payload)
		}
	}
	if len(dead) != wantDead || st.Pending != 0 {
		t.Errorf("end: %d pending, %d dead, want 0 and %d", st.Pending, len(dead), wantDead)
	}
	if row.allDead != "" {
		// One attempt each: one send, one re-login, one send again.
		if len(sends) != len(e.ids) || e.srv.Requests() != 2*len(e.ids) || e.srv.Logins() != 1+len(e.ids) {
			t.Errorf("%d sends, %d requests, %d logins for %d records: want one re-login and one repeat per attempt",
				len(sends), e.srv.Requests(), e.srv.Logins(), len(e.ids))
		}
		t.Logf("RESULT fault=%s attempts=%d requests=%d logins=%d dead=%d", row.name, len(sends), e.srv.Requests(), e.srv.Logins(), len(dead))
		return
	}
	if row.lookups && e.srv.Lists() == 0 {
		t.Errorf("no lookup after a lost answer")
	}
	// FIFO per key: code S-1#1 before S-1#2.
	var order []string
	for _, d := range delivered {
		if d.IntegrationID == "S-1" {
			var c struct{ Code string }
			json.Unmarshal(d.Column, &c)
			order = append(order, c.Code)
		}
	}
	if strings.Join(order, ",") != "ĞÜŞ-A,ĞÜŞ-B" {
		t.Errorf("S-1 arrived in the order %v, want ĞÜŞ-A then ĞÜŞ-B", order)
	}

	// Verdicts: a transient fault is retried, never dead-lettered.
	retried := 0
	for _, s := range sends {
		switch s.result.Verdict {
		case outbox.Retry:
			retried++
		case outbox.Reject:
			if !row.permanent {
				t.Errorf("send %d (%s) dead-lettered on a transient fault: %s", s.seq, e.ids[s.item.ID].name, s.result.Reason)
			}
		}
	}
	// (Down from the start: the start probe finds it, so no send fails.)
	if row.noFailure && retried != 0 {
		t.Errorf("%d retries of answers that were successes", retried)
	}
	if !row.permanent && !row.noFailure && row.minLogins == 0 && retried == 0 && !row.offline {
		t.Errorf("no send failed: the fault was not applied")
	}
	if row.minLogins > 0 {
		if n := e.srv.Logins(); n < row.minLogins {
			t.Errorf("%d logins, want at least %d (sessions expired mid-drain)", n, row.minLogins)
		}
		if retried != 0 {
			t.Errorf("%d retries: a session expiry is handled by logging in again, not by the backoff", retried)
		}
	}

	// Backoff on the injected clock.
	var (
		firstRetryAfter = time.Duration(-1)
		lastFail        = map[uint64]sendEvent{}
		pauseUntil      time.Time
		reconnectAt     time.Time // first good probe after an offline spell
		offlineSince    time.Time
		maxAttempts     int
	)
	for _, p := range probes {
		if p.err != nil && offlineSince.IsZero() {
			offlineSince = p.at
		}
		if p.err == nil && !offlineSince.IsZero() && reconnectAt.IsZero() {
			reconnectAt = p.at
		}
	}
	for _, s := range sends {
		name := e.ids[s.item.ID].name
		maxAttempts = max(maxAttempts, s.item.Attempts+1)
		if s.at.Before(pauseUntil) {
			t.Errorf("send %d (%s) at +%v during the Retry-After pause until +%v", s.seq, name, s.at.Sub(e.start), pauseUntil.Sub(e.start))
		}
		if !s.pausedAt.IsZero() && s.at.Before(s.pausedAt) {
			t.Errorf("send %d (%s) started while the queue showed a pause until +%v", s.seq, name, s.pausedAt.Sub(e.start))
		}
		if !s.item.NextAttempt.IsZero() && s.at.Before(s.item.NextAttempt) {
			t.Errorf("send %d (%s) at +%v before its next attempt +%v", s.seq, name, s.at.Sub(e.start), s.item.NextAttempt.Sub(e.start))
		}
		if prev, ok := lastFail[s.item.ID]; ok {
			gap := s.at.Sub(prev.at)
			if firstRetryAfter < 0 {
				firstRetryAfter = gap
			}
			want := expectedDelay(s.item.Attempts, prev.result.RetryAfter)
			switch {
			case !s.item.NextAttempt.IsZero():
				// The backoff the queue stored at the failure: exactly the
				// capped full-jitter step for this attempt (or Retry-After).
				if got := s.item.NextAttempt.Sub(prev.at); got != want {
					t.Errorf("%s attempt %d: backoff %v after +%v, want %v", name, s.item.Attempts, got, prev.at.Sub(e.start), want)
				}
			case row.offline && !reconnectAt.IsZero() && !s.at.Before(reconnectAt):
				// Backoff reset by the reconnect; the jitter applies.
			default:
				t.Errorf("%s attempt %d: no backoff stored after a failure", name, s.item.Attempts)
			}
		}
		if s.result.Verdict == outbox.Retry {
			lastFail[s.item.ID] = s
			if s.result.RetryAfter > 0 {
				if row.retryAfter == 0 {
					t.Errorf("send %d: Retry-After %v from a fault without one", s.seq, s.result.RetryAfter)
				}
				// The date form has a one-second resolution.
				if d := s.result.RetryAfter - row.retryAfter; d < -time.Second || d > time.Second {
					t.Errorf("send %d: Retry-After %v, want %v", s.seq, s.result.RetryAfter, row.retryAfter)
				}
				pauseUntil = s.at.Add(s.result.RetryAfter)
			}
		} else {
			delete(lastFail, s.item.ID)
		}
	}
	if row.retryAfter > 0 {
		if pauseUntil.IsZero() {
			t.Errorf("the server's Retry-After never reached the queue")
		}
		// Every send after the one that got the Retry-After waited for it,
		// whatever its key (Concurrency 1: sends are in clock order).
		var after []sendEvent
		for i, s := range sends {
			if s.result.RetryAfter > 0 {
				after = sends[i+1:]
				break
			}
		}
		if len(after) == 0 {
			t.Errorf("nothing sent after the Retry-After")
		}
		for _, s := range after {
			if s.at.Before(pauseUntil) {
				t.Errorf("send %d (%s) at +%v, before the end of the pause +%v", s.seq, e.ids[s.item.ID].name, s.at.Sub(e.start), pauseUntil.Sub(e.start))
			}
		}
	}
	if row.offline {
		if reconnectAt.IsZero() {
			t.Fatalf("no failed probe followed by a good one (probes %d)", len(probes))
		}
		if st.Online != true {
			t.Errorf("not online at the end")
		}
		// The probe that found the server waited its jitter before it
		// ran: the queue sends at once after it.
		hold := reconnectAt
		var firstAfter time.Time
		for _, s := range sends {
			if s.at.After(offlineSince) && s.at.Before(reconnectAt) {
				t.Errorf("send %d (%s) at +%v while offline (+%v..+%v)", s.seq, e.ids[s.item.ID].name,
					s.at.Sub(e.start), offlineSince.Sub(e.start), reconnectAt.Sub(e.start))
			}
			if !s.at.Before(reconnectAt) && firstAfter.IsZero() {
				firstAfter = s.at
			}
		}
		if !firstAfter.Equal(hold) {
			t.Errorf("first send after the reconnect at +%v, want +%v (reconnect +%v, jitter %v)",
				firstAfter.Sub(e.start), hold.Sub(e.start), reconnectAt.Sub(e.start), hold.Sub(reconnectAt))
		}
		// Probes while offline back off, capped at retry_max, each after
		// a random part of the reconnect jitter on top (no fleet probes
		// in one second).
		jitter := time.Duration(jitterRand * float64(reconnectJitter))
		for i := 1; i < len(probes); i++ {
			if probes[i-1].err == nil {
				continue
			}
			if gap := probes[i].at.Sub(probes[i-1].at); gap > retryMax+jitter || gap <= jitter {
				t.Errorf("probe %d: %v after a failed one, want (%v, %v]", i, gap, jitter, retryMax+jitter)
			}
		}
	}
	// No secret in anything the queue keeps or shows: reasons, dead
	// letters, the last error.
	secrets := append([]string{e.srv.Password, e.srv.APIKey}, e.srv.Sessions()...)
	texts := []string{st.LastError}
	for _, s := range sends {
		texts = append(texts, s.result.Reason)
	}
	for _, it := range dead {
		texts = append(texts, it.DeadReason, it.LastError)
	}
	for _, p := range probes {
		if p.err != nil {
			texts = append(texts, p.err.Error())
		}
	}
	for _, text := range texts {
		for _, sec := range secrets {
			if sec != "" && strings.Contains(text, sec) {
				t.Errorf("a secret leaked into %q", text)
			}
		}
	}
	t.Logf("RESULT fault=%s attempts=%d max_attempts_per_record=%d first_retry_after=%v paused_until=+%v probes=%d logins=%d delivered=%d dead=%d lost=%d virtual=%v",
		row.name, len(sends), maxAttempts, max(firstRetryAfter, 0), durOrZero(pauseUntil, e.start), len(probes), e.srv.Logins(),
		len(delivered), len(dead), len(e.ids)-len(delivered)-len(dead), e.clock.Now().Sub(e.start))
}

func durOrZero(t, start time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return t.Sub(start)
}
