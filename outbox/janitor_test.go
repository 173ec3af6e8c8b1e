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

// fillUntilFull enqueues what next makes, 32 at a time, until the queue
// refuses with ErrFull; it returns how many were accepted.
func fillUntilFull(t *testing.T, q *outbox.Queue, next func(i int) outbox.Entry) int {
	t.Helper()
	var mu sync.Mutex
	accepted, full := 0, false
	for round := 0; !full; round++ {
		if round > 2000 {
			t.Fatal("never full")
		}
		var wg sync.WaitGroup
		for j := range 32 {
			e := next(round*32 + j)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := q.Enqueue(context.Background(), e)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					accepted++
				case errors.Is(err, outbox.ErrFull):
					full = true
				default:
					t.Errorf("enqueue: %v", err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	return accepted
}

func specialCode(i int, payload string) outbox.Entry {
	return outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprint("special:", i), Payload: json.RawMessage(payload)}
}

// advanceJanitor lets d (at least JanitorEvery) pass and waits until the
// janitor has counted the bookkeeping at the new time: its run ended.
func advanceJanitor(t *testing.T, e *env, d time.Duration) outbox.Bookkeeping {
	t.Helper()
	e.clock.Advance(d)
	now := e.clock.Now()
	var b outbox.Bookkeeping
	testrig.WaitFor(t, "a janitor run", 15*time.Second, func() bool {
		b = stats(t, e.q).Bookkeeping
		return !b.CountedAt.Before(now)
	})
	return b
}

// An outbox filled by idempotency keys (the records themselves were all
// delivered) frees itself once the keys are older than 7 days, without a
// restart and without an enqueue getting through first: the janitor
// forgets them in the background. Before, keys were forgotten only by an
// enqueue that had already passed the size check, so a full outbox
// stayed full for good.
func TestFullOfIdempotencyKeysFreesItselfAfterSevenDays(t *testing.T) {
	defer outbox.SetJanitorPollForTest(10 * time.Millisecond)()
	e := newEnv(t, func(o *outbox.Options) { o.MaxSize = 4 << 20 })
	e.run(t)
	// Fill, let the records drain, fill again: until the outbox is full
	// with nothing pending, only the keys holding the space.
	accepted, keys, base := 0, 0, 0
	for round := 0; ; round++ {
		if round > 20 {
			t.Fatal("the records drain but the keys never fill the outbox")
		}
		n := fillUntilFull(t, e.q, func(i int) outbox.Entry {
			en := specialCode(base+i, `{"code":1}`)
			en.IdempotencyKey = fmt.Sprintf("%08d-%s", base+i, strings.Repeat("k", outbox.MaxIdempotencyKeyLen-9))
			return en
		})
		base += 1 << 20 // the refused indexes of this round may be among the accepted
		accepted, keys = accepted+n, keys+n
		testrig.WaitFor(t, "delivered", 30*time.Second, func() bool { return stats(t, e.q).Delivered == uint64(accepted) })
		if _, err := e.q.Enqueue(context.Background(), specialCode(-1-round, `{"code":2}`)); errors.Is(err, outbox.ErrFull) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		accepted++
		testrig.WaitFor(t, "delivered", 30*time.Second, func() bool { return stats(t, e.q).Delivered == uint64(accepted) })
	}
	if st := stats(t, e.q); st.Pending != 0 {
		t.Fatalf("pending %d after the drain", st.Pending)
	}
	b := advanceJanitor(t, e, 5*time.Minute)
	if b.IdempotencyKeys.Count != keys || b.IdempotencyKeys.Bytes < 2<<20 {
		t.Fatalf("bookkeeping %+v, want %d keys holding most of 4 MiB", b.IdempotencyKeys, keys)
	}
	// Six days later they are still remembered (DESIGN: at least 7 days).
	if b := advanceJanitor(t, e, 6*24*time.Hour); b.IdempotencyKeys.Count != keys {
		t.Fatalf("after 6 days %d of %d keys are left", b.IdempotencyKeys.Count, keys)
	}
	// Then they age out and the queue takes records again by itself.
	e.clock.Advance(24*time.Hour + time.Minute)
	testrig.WaitFor(t, "keys forgotten", 15*time.Second, func() bool {
		return stats(t, e.q).Bookkeeping.IdempotencyKeys.Count == 0
	})
	for i := range 100 {
		if _, err := e.q.Enqueue(context.Background(), specialCode(-100-i, `{"code":3}`)); err != nil {
			t.Fatalf("after the keys aged out, enqueue %d: %v", i, err)
		}
	}
	t.Logf("%d keys of %d characters filled 4 MiB (%d bytes of pages); forgotten after 7 days", keys,
		outbox.MaxIdempotencyKeyLen, b.IdempotencyKeys.Bytes)
}

// Dead letters fill the outbox; they are kept 30 days, then expire, and
// the queue takes records again without a restart.
func TestFullOfDeadLettersFreesItselfAfterThirtyDays(t *testing.T) {
	defer outbox.SetJanitorPollForTest(10 * time.Millisecond)()
	e := newEnv(t, func(o *outbox.Options) { o.MaxSize = 4 << 20 })
	e.s.SetDefault(outbox.Result{Verdict: outbox.Reject, Reason: "rejected by the test server"})
	e.run(t)
	payload := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 4000))
	// Fill, let the records die, fill again: until the outbox is full of
	// dead letters with nothing pending (a record that dies leaves its
	// index entries behind: a little room each time).
	accepted, base := 0, 0
	for round := 0; ; round++ {
		if round > 20 {
			t.Fatal("the dead letters never fill the outbox")
		}
		accepted += fillUntilFull(t, e.q, func(i int) outbox.Entry { return specialCode(base+i, payload) })
		base += 1 << 20
		testrig.WaitFor(t, "all dead", 30*time.Second, func() bool { st := stats(t, e.q); return st.Dead == accepted && st.Pending == 0 })
		_, err := e.q.Enqueue(context.Background(), specialCode(-1-round, payload))
		if errors.Is(err, outbox.ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
		testrig.WaitFor(t, "all dead", 30*time.Second, func() bool { st := stats(t, e.q); return st.Dead == accepted && st.Pending == 0 })
	}
	if b := advanceJanitor(t, e, 29*24*time.Hour); b.DeadLetters.Count != accepted || b.DeadLetters.Bytes < 2<<20 {
		t.Fatalf("after 29 days: dead letters %+v, want all %d kept", b.DeadLetters, accepted)
	}
	e.s.SetDefault(outbox.Result{Verdict: outbox.Delivered})
	e.clock.Advance(24*time.Hour + time.Minute)
	testrig.WaitFor(t, "dead letters expired", 15*time.Second, func() bool { return stats(t, e.q).Dead == 0 })
	for i := range 100 {
		if _, err := e.q.Enqueue(context.Background(), specialCode(-100-i, payload)); err != nil {
			t.Fatalf("after the dead letters expired, enqueue %d: %v", i, err)
		}
	}
	testrig.WaitFor(t, "new records delivered", 15*time.Second, func() bool { return stats(t, e.q).Pending == 0 })
	t.Logf("%d dead letters of %d bytes filled 4 MiB; expired after 30 days", accepted, len(payload))
}

// Beyond DeadLetterMax the oldest dead letters expire first, whatever
// their age; the newest are kept.
func TestDeadLettersBeyondTheCountBoundExpireOldestFirst(t *testing.T) {
	defer outbox.SetJanitorPollForTest(10 * time.Millisecond)()
	e := newEnv(t, func(o *outbox.Options) { o.DeadLetterMax = 5 })
	e.s.SetDefault(outbox.Result{Verdict: outbox.Reject, Reason: "no"})
	e.run(t)
	var ids []uint64
	for i := range 12 {
		ids = append(ids, enq(t, e.q, outbox.KindSpecialCode, fmt.Sprint("special:", i), i, false).ID)
	}
	// The janitor runs when the queue drains, and every JanitorEvery.
	testrig.WaitFor(t, "all sent", 15*time.Second, func() bool { return stats(t, e.q).DeadLettered == 12 })
	e.clock.Advance(5 * time.Minute)
	testrig.WaitFor(t, "bounded", 15*time.Second, func() bool { return stats(t, e.q).Dead == 5 })
	dead, err := e.q.List(outbox.Dead, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range dead {
		if it.ID != ids[7+i] {
			t.Fatalf("kept %v, want the 5 newest of %v", dead, ids)
		}
	}
	if st := stats(t, e.q); st.DeadLettered != 12 {
		t.Fatalf("dead_lettered_total %d, want 12 (a lifetime counter)", st.DeadLettered)
	}
}

// Page reads the queue in pages with a cursor, and never more than a
// bounded amount at a time whatever limit is.
func TestPageWalksWithACursor(t *testing.T) {
	e := newEnv(t, nil)
	var want []uint64
	for i := range 25 {
		want = append(want, enq(t, e.q, outbox.KindSpecialCode, fmt.Sprint("special:", i), i, false).ID)
	}
	var got []uint64
	after, pages := uint64(0), 0
	for {
		last, more, err := e.q.Page(outbox.Pending, after, 10, func(it outbox.Item) error {
			got = append(got, it.ID)
			if seqOf(t, it) != len(got)-1 {
				t.Fatalf("item %d has payload %s", it.ID, it.Payload)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		after = last
		if !more {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || pages != 3 {
		t.Fatalf("paged %v in %d pages, want %v in 3", got, pages, want)
	}
	stop := errors.New("stop")
	last, _, err := e.q.Page(outbox.Pending, 0, 100, func(it outbox.Item) error {
		if it.ID == want[3] {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || last != want[2] {
		t.Fatalf("stopped walk: last %d err %v", last, err)
	}
	if _, more, err := e.q.Page(outbox.Dead, 0, 10, func(outbox.Item) error { t.Fatal("no dead letters"); return nil }); err != nil || more {
		t.Fatalf("dead: more %v err %v", more, err)
	}
}

// An outbox filled with cards (each with a long integration_id, so that
// their links weigh more than their records) takes records again once
// they have drained, without a restart and without a prune asked by
// anyone: the card table stays within its bound in the background.
// Before, links and delivered marks were never deleted: 2,261 such cards
// filled 8 MiB for good.
func TestFullOfCardsFreesItselfAfterTheDrain(t *testing.T) {
	defer outbox.SetJanitorPollForTest(10 * time.Millisecond)()
	e := newEnv(t, func(o *outbox.Options) { o.MaxSize = 2 << 20 })
	long := strings.Repeat("E", 900)
	n := fillUntilFull(t, e.q, func(i int) outbox.Entry { return kasaEntry(fmt.Sprint(i+1), fmt.Sprint(long, i), i) })
	e.run(t)
	testrig.WaitFor(t, "drained", 30*time.Second, func() bool { st := stats(t, e.q); return st.Delivered == uint64(n) && st.Pending == 0 })
	// The queue keeps taking new cards, as many again: what the old
	// cards left behind never fills it.
	more := 0
	testrig.WaitFor(t, "new cards taken", 30*time.Second, func() bool {
		for ; more < n; more++ {
			_, err := e.q.Enqueue(context.Background(), kasaEntry(fmt.Sprint(n+more+1), fmt.Sprint(long, n+more), 0))
			if errors.Is(err, outbox.ErrFull) {
				return false // the drain of the new ones frees it again
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return true
	})
	b := advanceJanitor(t, e, 5*time.Minute)
	// The card table holds at most MaxSize/16 bytes of links.
	if limit := (2 << 20) / 16; b.Aliases.Count*len(long) > limit {
		t.Fatalf("card links %+v after %d cards, want at most %d bytes of them", b.Aliases, 2*n, limit)
	}
	t.Logf("%d cards with %d-byte integration_ids filled 2 MiB; %d more went through; links now %+v", n, len(long), more, b.Aliases)
}
