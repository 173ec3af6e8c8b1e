package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// Card links and delivered marks: the card table is bounded
// and never fills the outbox. Cards with long ERP ids go through a 4 MiB
// outbox, a hundred at a time: on the code before, their links were never
// deleted and the outbox was full ("pending: 0", every enqueue ErrFull)
// after about a thousand cards. Now links and marks of cards with nothing
// pending are pruned beyond MaxSize/16 bytes (and CardLimit entries),
// oldest first; those of cards with a pending update stay; all of them go
// once older than CardTTL.
func TestCardBookkeepingBounded(t *testing.T) {
	const maxSize = 4 << 20
	e := newEnv(t, func(o *outbox.Options) { o.MaxSize = maxSize })
	long := strings.Repeat("E", 900)
	stop := e.run(t)
	card := 0
	for wave := range 30 {
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for range 100 {
			card++
			wg.Add(1)
			go func(n int) {
				defer wg.Done()
				if _, err := e.q.Enqueue(ctxT(t), kasaEntry(fmt.Sprint(n), fmt.Sprint(long, n), n)); err != nil {
					errs <- err
				}
			}(card)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("wave %d (%d cards so far): %v", wave, card, err)
		}
		testrig.WaitFor(t, "wave delivered", 30*time.Second, func() bool {
			st := stats(t, e.q)
			return st.Pending == 0 && st.InFlight == 0
		})
	}
	stop()
	if _, err := e.q.PruneCardsForTest(100_000); err != nil {
		t.Fatal(err)
	}
	st := stats(t, e.q)
	limit := uint64(maxSize / 16)
	t.Logf("after %d cards: %+v", card, st.Cards)
	if st.Cards.LinkBytes > limit || st.Cards.MarkBytes > limit || st.Cards.Links == 0 || st.Cards.Links > 3000 {
		t.Fatalf("card table %+v, want each kind under %d bytes", st.Cards, limit)
	}

	// Cards with a pending update keep their links, however many.
	var ids []string
	for i := range 200 {
		n := fmt.Sprint(10_000 + i)
		mustEnq(t, e.q, kasaEntry(n, long+n, 1))
		ids = append(ids, n)
	}
	if _, err := e.q.PruneCardsForTest(100_000); err != nil {
		t.Fatal(err)
	}
	for _, n := range ids {
		if it := mustEnq(t, e.q, kasaEntry("", long+n, 2)); it.Key != "kasa:id:"+n {
			t.Fatalf("card %s with a pending update lost its link: went to %q", n, it.Key)
		}
	}
	// Older than CardTTL with nothing pending: every link goes.
	e.clock.Advance(outbox.DefaultCardTTL + time.Hour)
	e.run(t)
	testrig.WaitFor(t, "delivered", 30*time.Second, func() bool {
		st := stats(t, e.q)
		return st.Pending == 0 && st.InFlight == 0
	})
	for {
		n, err := e.q.PruneCardsForTest(1000)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	if st := stats(t, e.q); st.Cards.Links != 0 {
		t.Fatalf("links older than the ttl kept: %+v", st.Cards)
	}
}

// The count bound: beyond CardLimit, oldest first. The cards are delivered
// under a larger bound and the file reopened with CardLimit 20, so that
// the pruning a delivery does (which skips a card still pending, and so
// depends on the order the sends finish in) does not choose the victims.
func TestCardLimitOldestFirst(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 60 {
		mustEnq(t, e.q, kasaEntry(fmt.Sprint(i), fmt.Sprint("E", i), i))
		e.clock.Advance(time.Minute)
	}
	stop := e.run(t)
	testrig.WaitFor(t, "delivered", 15*time.Second, func() bool {
		st := stats(t, e.q)
		return st.Pending == 0 && st.InFlight == 0
	})
	stop()
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	opts := e.opts
	opts.CardLimit = 20
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.PruneCardsForTest(1000); err != nil {
		t.Fatal(err)
	}
	if st := stats(t, q); st.Cards.Links != 20 || st.Cards.Marks != 20 {
		t.Fatalf("card table %+v, want 20 links and 20 marks", st.Cards)
	}
	// The newest cards kept their links, the oldest lost theirs.
	if it := mustEnq(t, q, kasaEntry("", "E59", 1)); it.Key != "kasa:id:59" {
		t.Errorf("newest card's link gone: %q", it.Key)
	}
	if it := mustEnq(t, q, kasaEntry("", "E0", 1)); it.Key != "kasa:int:E0" {
		t.Errorf("oldest card's link kept: %q", it.Key)
	}
}

// Memory does not grow with the cards ever seen: the links of a file are
// never loaded wholesale. On the code before, the first enqueue loaded
// every link into a map the queue kept (93 MB of heap for 70,848 cards).
func TestCardLinksNotHeldInMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200,000 links")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	if err := outbox.BulkLinksForTest(path, 200_000); err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC() // twice: bbolt's page pool (a sync.Pool) keeps its pages through one
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	q, err := outbox.Open(outbox.Options{Path: path, Clock: clocktest.New(time.Time{})})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	it, err := q.Enqueue(context.Background(), kasaEntry("", "ERP-00000007", 1))
	if err != nil {
		t.Fatal(err)
	}
	if it.Key != "kasa:id:8" {
		t.Fatalf("key %q, want the linked card kasa:id:8", it.Key)
	}
	// A delivery runs the one-time index of the old links.
	pruned, err := q.PruneCardsForTest(10)
	if err != nil {
		t.Fatal(err)
	}
	after := heap()
	grown := int64(after) - int64(before)
	t.Logf("heap grew %d bytes with 200,000 links in the file", grown)
	if grown > 4<<20 {
		t.Fatalf("heap grew %d bytes: card links are held in memory", grown)
	}
	if st, err := q.Stats(); err != nil || st.Cards.Links+uint64(pruned) != 200_000 {
		t.Fatalf("links %+v %v, want all 200,000 indexed", st.Cards, err)
	}
	runtime.KeepAlive(q)
}

// The bound is kept while the queue is full too: pruning does not wait
// for an enqueue that passed the size check.
func TestPruneCardsWhenFull(t *testing.T) {
	e := newEnv(t, func(o *outbox.Options) { o.MaxSize = 1 << 20 })
	long := strings.Repeat("F", 1000)
	e.run(t)
	n := 0
	for ; n < 5000; n++ {
		_, err := e.q.Enqueue(ctxT(t), kasaEntry(fmt.Sprint(n), fmt.Sprint(long, n), n))
		if errors.Is(err, outbox.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	testrig.WaitFor(t, "delivered", 30*time.Second, func() bool {
		st := stats(t, e.q)
		return st.Pending == 0 && st.InFlight == 0
	})
	if _, err := e.q.PruneCardsForTest(100_000); err != nil {
		t.Fatal(err)
	}
	if _, err := e.q.Enqueue(ctxT(t), kasaEntry("x", long, 1)); err != nil {
		t.Fatalf("after the drain and a prune the outbox still refuses (%d cards went in): %v", n, err)
	}
}

// A file of an earlier version: card 960 first seen by its integration_id
// (so every name of it mapped to "kasa:int:960", an update pending there).
// After the upgrade an update with both names goes under the card's id and
// replaces the pending one; by either name alone it finds the card; the
// old self-link is dropped and the rest indexed and counted.
func TestCardLinksOfAnEarlierVersion(t *testing.T) {
	e := newEnv(t, nil)
	old := mustEnq(t, e.q, kasaEntry("", "960", 1))
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := outbox.OldLinksForTest(e.path, map[string]string{"kasa:int:960": "kasa:int:960", "kasa:id:960": "kasa:int:960"}); err != nil {
		t.Fatal(err)
	}
	q, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// By its id alone first: the old mapping still names the card.
	if it := mustEnq(t, q, kasaEntry("960", "", 2)); it.Key != old.Key {
		t.Errorf("update by id before any pair: %q, want the old key %q", it.Key, old.Key)
	}
	pair := mustEnq(t, q, kasaEntry("960", "960", 3))
	if pair.Key != "kasa:id:960" {
		t.Fatalf("pair under %q", pair.Key)
	}
	items, err := q.List(outbox.Pending, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != pair.ID {
		t.Fatalf("pending %+v, want the pair alone", items)
	}
	for _, e := range []outbox.Entry{kasaEntry("960", "", 4), kasaEntry("", "960", 5)} {
		if it := mustEnq(t, q, e); it.Key != "kasa:id:960" {
			t.Errorf("%s went to %q", e.Key, it.Key)
		}
	}
	if err := q.CheckIndex(); err != nil {
		t.Fatal(err)
	}
	if st, err := q.Stats(); err != nil || st.Cards.Links != 1 || st.Pending != 1 {
		t.Fatalf("stats %+v %v, want one link (integration_id -> id) and one pending", st, err)
	}
}
