package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// kasaEntry is a card update as the agent enqueues it: the key is the
// card's id when it has one, its integration_id the alias.
func kasaEntry(id, intID string, seq int) outbox.Entry {
	col := map[string]any{"seq": seq}
	var key string
	var aliases []string
	if id != "" {
		col["id"] = id
		key = "kasa:id:" + id
	}
	if intID != "" {
		col["integration_id"] = intID
		if key == "" {
			key = "kasa:int:" + intID
		} else {
			aliases = []string{"kasa:int:" + intID}
		}
	}
	p, _ := json.Marshal(col)
	return outbox.Entry{Kind: outbox.KindKasa, Key: key, Aliases: aliases, Payload: p, Coalesce: true}
}

func mustEnq(t *testing.T, q *outbox.Queue, e outbox.Entry) outbox.Item {
	t.Helper()
	it, err := q.Enqueue(context.Background(), e)
	if err != nil {
		t.Fatalf("enqueue %s: %v", e.Key, err)
	}
	return it
}

// Two cards (ids 802 and 805) posted with one integration_id
// stay two cards: own keys, nothing coalesced across them, the link moves
// to the newest pair, and the conflict is logged once and shown. On the
// code before, 805's update was queued under 802's key and coalesced
// away, and so was every later update of 805.
func TestTwoCardsOneIntegrationIDStayApart(t *testing.T) {
	var logs testrig.SyncBuffer
	e := newEnv(t, func(o *outbox.Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	a := mustEnq(t, e.q, kasaEntry("802", "K", 1))
	b := mustEnq(t, e.q, kasaEntry("805", "K", 2))
	c := mustEnq(t, e.q, kasaEntry("802", "L", 3))
	if a.Key != "kasa:id:802" || b.Key != "kasa:id:805" || c.Key != "kasa:id:802" {
		t.Fatalf("keys %q %q %q, want each card under its own id", a.Key, b.Key, c.Key)
	}
	items, err := e.q.List(outbox.Pending, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].ID != b.ID || items[1].ID != c.ID {
		t.Fatalf("pending %+v, want 805's update and 802's newest", items)
	}
	// K now means 805: an update by K alone is 805's.
	d := mustEnq(t, e.q, kasaEntry("", "K", 4))
	if d.Key != "kasa:id:805" {
		t.Fatalf("update by integration_id K went to %q, want card 805", d.Key)
	}
	// The same conflict again (805 then 802 then 805 with K) is logged
	// once per direction, counted each time.
	mustEnq(t, e.q, kasaEntry("802", "K", 5))
	mustEnq(t, e.q, kasaEntry("805", "K", 6))
	st := stats(t, e.q)
	if st.CardConflicts != 3 || !strings.Contains(st.LastCardConflict, "kasa:int:K") {
		t.Errorf("conflicts %d %q, want 3 naming the integration_id", st.CardConflicts, st.LastCardConflict)
	}
	if n := strings.Count(logs.String(), "one name given to two records"); n != 2 {
		t.Errorf("%d conflict log lines, want 2 (802→805 once, 805→802 once):\n%s", n, logs.String())
	}
	e.run(t)
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.InFlight == 0 })
	last := map[string]int{}
	for _, call := range e.s.Calls() {
		last[call.Item.Key] = seqOf(t, call.Item)
	}
	if last["kasa:id:805"] != 6 || last["kasa:id:802"] != 5 {
		t.Errorf("last states sent %v, want 805 at 6 and 802 at 5", last)
	}
}

// A coalescing update takes the place of the one it
// replaces. Before, each newer update went to the back of the due heads,
// so a card that keeps changing behind a backlog was never sent.
func TestCoalescingTakesTheReplacedTurn(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.Concurrency = 1 })
	mustEnq(t, e.q, kasaEntry("9", "", 1))
	for i := range 300 {
		enq(t, e.q, outbox.KindSpecialCode, fmt.Sprint("special_code:", i), i, false)
	}
	card := mustEnq(t, e.q, kasaEntry("9", "", 2))
	e.run(t)
	if err := e.s.WaitCalls(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	first := e.s.Calls()[0].Item
	if first.ID != card.ID {
		t.Fatalf("first send %d (%s), want the card's newest update %d in the replaced one's turn", first.ID, first.Key, card.ID)
	}
	// And it keeps changing while the backlog drains: every version it
	// is in takes the turn it had, it is sent as soon as its turn comes.
	testrig.WaitFor(t, "drain", 30*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.InFlight == 0 })
	if err := e.q.CheckIndex(); err != nil {
		t.Fatal(err)
	}
}

// A coalescing update of a card in backoff keeps that due time and turn;
// across a reopen too.
func TestCoalescingTurnSurvivesReopen(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.Concurrency = 1 })
	mustEnq(t, e.q, kasaEntry("9", "", 1))
	enq(t, e.q, outbox.KindSpecialCode, "special_code:a", 1, false)
	card := mustEnq(t, e.q, kasaEntry("9", "", 2))
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	q2, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q2.Close() }) // after the run stops
	if err := q2.CheckIndex(); err != nil {
		t.Fatal(err)
	}
	e.q = q2
	e.run(t)
	if err := e.s.WaitCalls(ctxT(t), 2); err != nil {
		t.Fatal(err)
	}
	if c := e.s.Calls(); c[0].Item.ID != card.ID {
		t.Fatalf("first send %d, want the card %d", c[0].Item.ID, card.ID)
	}
}

// gateSender holds the sends of one key until released.
type gateSender struct {
	mu      sync.Mutex
	holdKey string
	held    chan struct{}
	release chan struct{}
	got     []outbox.Item
	reject  map[uint64]string
}

func (g *gateSender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	g.mu.Lock()
	g.got = append(g.got, it)
	hold := it.Key == g.holdKey && g.held != nil
	var held chan struct{}
	if hold {
		held, g.held = g.held, nil
	}
	reason, rej := g.reject[it.ID]
	g.mu.Unlock()
	if hold {
		close(held)
		select {
		case <-g.release:
		case <-ctx.Done():
			return outbox.Result{Verdict: outbox.Retry, Reason: "stopped"}
		}
	}
	if rej {
		return outbox.Result{Verdict: outbox.Reject, Reason: reason}
	}
	return outbox.Result{Verdict: outbox.Delivered}
}

func (g *gateSender) Probe(context.Context) error { return nil }

// Retrying a dead update of a card is refused (409 in the
// API) when a newer update of the card is pending or being sent, not
// only when one was delivered; force sends it anyway. Before, the retry
// was taken and Ödüyo could end on the older state.
func TestStaleRetryRefusedWhileNewerPendingOrInFlight(t *testing.T) {
	e := newEnv(t, nil)
	old := mustEnq(t, e.q, kasaEntry("821", "E821", 1))
	g := &gateSender{reject: map[uint64]string{old.ID: "HTTP 404 status false"}, release: make(chan struct{})}
	stop := testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return e.q.Run(ctx, g) })
	testrig.WaitFor(t, "dead", 15*time.Second, func() bool { return stats(t, e.q).Dead == 1 })
	stop()

	// A newer update pending (the sender is stopped).
	newer := mustEnq(t, e.q, kasaEntry("", "E821", 2))
	err := e.q.Retry(old.ID)
	if !errors.Is(err, outbox.ErrSuperseded) || !strings.Contains(err.Error(), fmt.Sprintf("item %d", newer.ID)) || !strings.Contains(err.Error(), "pending") {
		t.Fatalf("retry with a newer update pending: %v, want ErrSuperseded naming item %d as pending", err, newer.ID)
	}

	// Being sent.
	g.mu.Lock()
	g.holdKey, g.held = "kasa:id:821", make(chan struct{})
	held := g.held
	g.mu.Unlock()
	testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return e.q.Run(ctx, g) })
	<-held
	err = e.q.Retry(old.ID)
	if !errors.Is(err, outbox.ErrSuperseded) || !strings.Contains(err.Error(), fmt.Sprintf("item %d", newer.ID)) || !strings.Contains(err.Error(), "being sent") {
		t.Fatalf("retry with a newer update in flight: %v, want ErrSuperseded naming item %d as being sent", err, newer.ID)
	}
	if st := stats(t, e.q); st.Dead != 1 {
		t.Fatalf("refused retries changed the queue: %+v", st)
	}
	close(g.release)
	testrig.WaitFor(t, "newer delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
	// Delivered: refused as before; force takes it.
	if err := e.q.Retry(old.ID); !errors.Is(err, outbox.ErrSuperseded) || !strings.Contains(err.Error(), "delivered") {
		t.Fatalf("retry after the newer was delivered: %v", err)
	}
	if err := e.q.ForceRetry(old.ID); err != nil {
		t.Fatalf("force: %v", err)
	}
}

// An update by integration_id alone and the first one that pairs it with
// the card's id, in one group commit: the pair replaces it (it would
// otherwise be sent later with the card's id, after the newer state).
func TestPairReplacesUnlinkedUpdateInTheSameCommit(t *testing.T) {
	e := newHeldEnv(t)
	e.q.StopJanitorForTest()
	release := sync.OnceFunc(e.q.HoldWritesForTest())
	t.Cleanup(release)
	var wg sync.WaitGroup
	enqAsync := func(en outbox.Entry, out *outbox.Item) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*out = mustEnq(t, e.q, en)
		}()
	}
	var other, lone, pair outbox.Item
	enqAsync(outbox.Entry{Kind: outbox.KindSpecialCode, Key: "special_code:X", Payload: []byte(`{}`)}, &other)
	testrig.WaitFor(t, "a commit held", 10*time.Second, e.q.CommittingForTest)
	enqAsync(kasaEntry("", "E5", 1), &lone)
	testrig.WaitFor(t, "first queued", 10*time.Second, func() bool { return e.q.QueuedForTest() == 1 })
	enqAsync(kasaEntry("5", "E5", 2), &pair)
	testrig.WaitFor(t, "both queued", 10*time.Second, func() bool { return e.q.QueuedForTest() == 2 })
	release()
	wg.Wait()
	items, err := e.q.List(outbox.Pending, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].ID != other.ID || items[1].ID != pair.ID || lone.ID >= pair.ID {
		t.Fatalf("pending %+v, want the special code and the pair alone (the lone update %d replaced)", items, lone.ID)
	}
}

// A card that keeps changing: a card whose first update was queued before a
// backlog of special codes and that keeps changing (every millisecond
// here) is sent when that first update's turn comes, in its newest state
// at that moment: each newer update takes the place of the one it
// replaces. Before, each one went behind the whole backlog (0 deliveries
// of the card in 90 s behind 20,000 codes). Its later updates, made after
// it was sent, queue behind what was queued before them.
func TestChangingCardNotStarved(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.Concurrency = 1 })
	mustEnq(t, e.q, kasaEntry("9", "", 0))
	const codes = 1500
	for i := range codes {
		enq(t, e.q, outbox.KindSpecialCode, fmt.Sprint("special_code:", i), i, false)
	}
	stopUpdates := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 1; ; seq++ {
			select {
			case <-stopUpdates:
				return
			case <-time.After(time.Millisecond):
			}
			if _, err := e.q.Enqueue(context.Background(), kasaEntry("9", "", seq)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	testrig.WaitFor(t, "the card updated", 10*time.Second, func() bool { return stats(t, e.q).Coalesced >= 5 })
	e.run(t)
	testrig.WaitFor(t, "codes drained", 60*time.Second, func() bool { return len(e.s.CallsFor("special_code:"+fmt.Sprint(codes-1))) > 0 })
	close(stopUpdates)
	wg.Wait()
	codesBefore := 0
	for _, c := range e.s.Calls() {
		if c.Item.Kind == outbox.KindKasa {
			if seqOf(t, c.Item) < 5 {
				t.Errorf("the card went in an old state (seq %d)", seqOf(t, c.Item))
			}
			break
		}
		codesBefore++
	}
	t.Logf("the card's first delivery came after %d of %d codes", codesBefore, codes)
	if codesBefore > 0 {
		t.Fatalf("the card's first delivery came after %d of %d codes, want first (its turn): starved behind the backlog", codesBefore, codes)
	}
}
