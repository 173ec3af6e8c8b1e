package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

func enqCard(t *testing.T, q *outbox.Queue, key string, aliases []string, seq int) outbox.Item {
	t.Helper()
	p, _ := json.Marshal(map[string]any{"key": key, "seq": seq})
	it, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: key, Aliases: aliases, Payload: p, Coalesce: true})
	if err != nil {
		t.Fatalf("enqueue %s/%d: %v", key, seq, err)
	}
	return it
}

// One card, one key: updates that name the card by its id, by its
// integration_id or by both share one FIFO key and coalesce, in either
// order of first sight, and across a reopen.
func TestOneRecordOneKey(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first []string // key, aliases…
	}{
		{"id and integration_id first", []string{"kasa:id:960", "kasa:int:960"}},
		{"integration_id alone first", []string{"kasa:int:960"}},
		{"id alone first", []string{"kasa:id:960"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			a := enqCard(t, e.q, tc.first[0], tc.first[1:], 1)
			b := enqCard(t, e.q, "kasa:id:960", []string{"kasa:int:960"}, 2)
			c := enqCard(t, e.q, "kasa:int:960", nil, 3)
			d := enqCard(t, e.q, "kasa:id:960", nil, 4)
			// The first update may stay under its own name when it was
			// the integration_id alone; the next one takes it over.
			if b.Key != "kasa:id:960" || b.Key != c.Key || c.Key != d.Key || (a.Key != b.Key && a.Key != "kasa:int:960") {
				t.Fatalf("keys %q %q %q %q, want one", a.Key, b.Key, c.Key, d.Key)
			}
			if st := stats(t, e.q); st.Pending != 1 || st.Coalesced != 3 {
				t.Errorf("pending %d coalesced %d, want 1 and 3", st.Pending, st.Coalesced)
			}
			// Durable: a new queue on the same file knows the names.
			if err := e.q.Close(); err != nil {
				t.Fatal(err)
			}
			q2, err := outbox.Open(e.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer q2.Close()
			for _, name := range []string{"kasa:int:960", "kasa:id:960"} {
				if it := enqCard(t, q2, name, nil, 5); it.Key != b.Key {
					t.Errorf("after reopen %s -> %q, want %q", name, it.Key, b.Key)
				}
			}
			if it := enqCard(t, q2, "kasa:int:961", nil, 6); it.Key != "kasa:int:961" {
				t.Errorf("another card got %q", it.Key)
			}
		})
	}
}

// The newer update is delivered last, whatever names it carries.
func TestOneRecordOneKeyOrder(t *testing.T) {
	e := newEnv(t, nil)
	// Not coalescing, so that both are sent; the first one fails once.
	p1, _ := json.Marshal(map[string]any{"seq": 1})
	p2, _ := json.Marshal(map[string]any{"seq": 2})
	a, err := e.q.Enqueue(ctxT(t), outbox.Entry{Kind: outbox.KindKasa, Key: "kasa:id:960", Aliases: []string{"kasa:int:960"}, Payload: p1})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.q.Enqueue(ctxT(t), outbox.Entry{Kind: outbox.KindKasa, Key: "kasa:int:960", Payload: p2})
	if err != nil {
		t.Fatal(err)
	}
	if a.Key != b.Key {
		t.Fatalf("keys %q and %q", a.Key, b.Key)
	}
	e.s.ScriptID(a.ID, outbox.Result{Verdict: outbox.Retry, Reason: "HTTP 500"})
	e.run(t)
	testrig.WaitFor(t, "first attempt failed", 15*time.Second, func() bool {
		items, _ := e.q.List(outbox.Pending, 0)
		return len(items) == 2 && items[0].Attempts == 1 && !items[0].InFlight
	})
	e.clock.Advance(time.Hour)
	testrig.WaitFor(t, "drain", 15*time.Second, func() bool { st := stats(t, e.q); return st.Pending == 0 && st.InFlight == 0 })
	var got []int
	for _, c := range e.s.CallsFor(a.Key) {
		got = append(got, seqOf(t, c.Item))
	}
	if fmt.Sprint(got) != "[1 1 2]" {
		t.Errorf("sends %v, want [1 1 2]: the newer state last", got)
	}
}

// A retry never regresses a card: a dead update older than a delivered
// one is refused unless forced.
func TestRetryNeverRegresses(t *testing.T) {
	e := newEnv(t, nil)
	old := enqCard(t, e.q, "kasa:id:7", []string{"kasa:int:K7"}, 1)
	e.s.ScriptID(old.ID, outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 400"})
	stop := e.run(t)
	testrig.WaitFor(t, "dead", 15*time.Second, func() bool { return stats(t, e.q).Dead == 1 })
	newer := enqCard(t, e.q, "kasa:int:K7", nil, 2)
	testrig.WaitFor(t, "newer delivered", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
	stop()
	err := e.q.Retry(old.ID)
	if !errors.Is(err, outbox.ErrSuperseded) || !strings.Contains(err.Error(), fmt.Sprintf("item %d", newer.ID)) {
		t.Fatalf("retry: %v, want ErrSuperseded naming item %d", err, newer.ID)
	}
	if st := stats(t, e.q); st.Dead != 1 || st.Pending != 0 {
		t.Errorf("refused retry changed the queue: %+v", st)
	}
	if err := e.q.ForceRetry(old.ID); err != nil {
		t.Fatalf("force: %v", err)
	}
	if st := stats(t, e.q); st.Dead != 0 || st.Pending != 1 {
		t.Errorf("after force: %+v", st)
	}
	// A dead update with nothing newer delivered is retried as before.
	lone := enqCard(t, e.q, "kasa:id:8", nil, 1)
	e.s.ScriptID(lone.ID, outbox.Result{Verdict: outbox.Reject, Reason: "HTTP 400"})
	e.run(t)
	testrig.WaitFor(t, "lone dead", 15*time.Second, func() bool { return stats(t, e.q).Dead == 1 })
	if err := e.q.Retry(lone.ID); err != nil {
		t.Errorf("retry of a card with nothing newer: %v", err)
	}
}

// The producer's idempotency key: a repeat gets the first item and stores
// nothing; another body under the key is a conflict; the key is what the
// sender gets; it survives a reopen and is forgotten after the TTL.
func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t, nil)
	entry := func(key string, seq int) outbox.Entry {
		p, _ := json.Marshal(map[string]any{"seq": seq})
		return outbox.Entry{Kind: outbox.KindSpecialCode, Key: "special_code:S-1", Payload: p, IdempotencyKey: key}
	}
	first, err := e.q.Enqueue(ctxT(t), entry("pos-req-1", 1))
	if err != nil || first.IdempotencyKey != "pos-req-1" {
		t.Fatalf("first: %+v %v", first, err)
	}
	// Concurrent repeats (a POS retrying while the first answer is lost).
	var wg sync.WaitGroup
	ids := make([]uint64, 20)
	errs := make([]error, 20)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			it, err := e.q.Enqueue(ctxT(t), entry("pos-req-1", 1))
			ids[i], errs[i] = it.ID, err
		}()
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != first.ID {
			t.Errorf("repeat %d: id %d err %v, want %d", i, ids[i], errs[i], first.ID)
		}
	}
	if st := stats(t, e.q); st.Enqueued != 1 || st.Pending != 1 {
		t.Errorf("enqueued %d pending %d, want 1 and 1", st.Enqueued, st.Pending)
	}
	if _, err := e.q.Enqueue(ctxT(t), entry("pos-req-1", 2)); !errors.Is(err, outbox.ErrIdempotencyConflict) {
		t.Errorf("other body: %v", err)
	}
	for _, bad := range []string{strings.Repeat("k", 129), "tab\there", "ş", " leading", "trailing "} {
		if _, err := e.q.Enqueue(ctxT(t), entry(bad, 3)); !errors.Is(err, outbox.ErrInvalidEntry) {
			t.Errorf("key %q: %v", bad, err)
		}
	}
	stop := e.run(t)
	testrig.WaitFor(t, "sent", 15*time.Second, func() bool { return stats(t, e.q).Delivered == 1 })
	stop()
	if c := e.s.Calls(); len(c) != 1 || c[0].Item.IdempotencyKey != "pos-req-1" {
		t.Errorf("calls %+v", c)
	}
	// Delivered since, and across a reopen: still the first id.
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	q2, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if it, err := q2.Enqueue(ctxT(t), entry("pos-req-1", 1)); err != nil || it.ID != first.ID {
		t.Errorf("after reopen: %+v %v", it, err)
	}
	// Six days later it is still known; after seven, the key is free.
	e.clock.Advance(6 * 24 * time.Hour)
	if _, err := q2.Enqueue(ctxT(t), entry("pos-req-2", 1)); err != nil {
		t.Fatal(err)
	}
	if it, err := q2.Enqueue(ctxT(t), entry("pos-req-1", 1)); err != nil || it.ID != first.ID {
		t.Errorf("after 6 days: %+v %v", it, err)
	}
	e.clock.Advance(outbox.IdempotencyTTL)
	if _, err := q2.Enqueue(ctxT(t), entry("pos-req-3", 1)); err != nil {
		t.Fatal(err)
	}
	if it, err := q2.Enqueue(ctxT(t), entry("pos-req-1", 2)); err != nil || it.ID == first.ID {
		t.Errorf("after the ttl the key is reusable: %+v %v", it, err)
	}
}

// A card first seen under each name alone: the update that carries both
// links the two keys and replaces what is pending under either.
func TestLinkingUpdateReplacesBothKeys(t *testing.T) {
	e := newEnv(t, nil)
	a := enqCard(t, e.q, "kasa:int:960", nil, 1)
	b := enqCard(t, e.q, "kasa:id:960", nil, 2)
	if a.Key == b.Key {
		t.Fatalf("keys merged before anything linked them: %q", a.Key)
	}
	c := enqCard(t, e.q, "kasa:id:960", []string{"kasa:int:960"}, 3)
	items, err := e.q.List(outbox.Pending, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != c.ID {
		t.Fatalf("pending %+v, want the linking update alone", items)
	}
	if st := stats(t, e.q); st.Coalesced != 2 {
		t.Errorf("coalesced %d, want 2", st.Coalesced)
	}
	for _, name := range []string{"kasa:int:960", "kasa:id:960"} {
		if it := enqCard(t, e.q, name, nil, 4); it.Key != c.Key {
			t.Errorf("%s -> %q, want %q", name, it.Key, c.Key)
		}
	}
	if err := e.q.CheckIndex(); err != nil {
		t.Fatal(err)
	}
}
