package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// deliveryRig is the real outbox (a bbolt file), the agent's Sender and
// the fake Ödüyo server, on a manual clock.
type deliveryRig struct {
	q     *outbox.Queue
	lq    localapi.Queue
	s     *Sender
	srv   *oduyotest.Server
	clock *clocktest.Clock
}

func newDeliveryRig(t *testing.T) *deliveryRig {
	t.Helper()
	srv := oduyotest.NewServer()
	t.Cleanup(srv.Close)
	c, err := oduyo.New(oduyo.Config{BaseURL: srv.URL(), APIKey: srv.APIKey, Username: srv.Username, Password: srv.Password, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC))
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db"), Clock: clk, Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	s := NewSender(c)
	last, err := q.LastID()
	if err != nil {
		t.Fatal(err)
	}
	s.SetBootSequence(last)
	return &deliveryRig{q: q, lq: LocalQueue(q), s: s, srv: srv, clock: clk}
}

func (r *deliveryRig) run(t *testing.T) func() {
	return testrig.Run(t, "outbox", 10*time.Second, func(ctx context.Context) error { return r.q.Run(ctx, r.s) })
}

func (r *deliveryRig) kasa(t *testing.T, column string) localapi.Accepted {
	t.Helper()
	col, key, err := records.NormalizeKasa([]byte(column))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := r.lq.Enqueue(context.Background(), localapi.Record{Kind: localapi.KindKasa, Key: key, Column: col})
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

func (r *deliveryRig) stats(t *testing.T) outbox.Stats {
	t.Helper()
	st, err := r.q.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (r *deliveryRig) settled(t *testing.T) func() bool {
	return func() bool { st := r.stats(t); return st.Pending == 0 && st.InFlight == 0 }
}

// A kasa update without an id that Ödüyo refuses is looked up
// by its integration_id (erp_kasa_fisi/list) and sent once more with the
// id found; the card remembers it, so its next update goes with the id at
// once; a card Ödüyo does not know is a dead letter saying so. Before, the
// refused update was dead-lettered and nothing looked the card up.
func TestKasaRefusedWithoutIDIsLookedUp(t *testing.T) {
	r := newDeliveryRig(t)
	r.srv.RequireKasaID(true)
	r.srv.AddKasaCard("77", "ERP-77")
	for i := range 40 { // other cards in the table
		r.srv.AddKasaCard(fmt.Sprint(1000+i), fmt.Sprint("ERP-X", i))
	}
	r.run(t)
	r.kasa(t, `{"integration_id":"ERP-77","balance":"10,50"}`)
	testrig.WaitFor(t, "first update", 15*time.Second, r.settled(t))
	if st := r.stats(t); st.Delivered != 1 || st.Dead != 0 {
		t.Fatalf("stats %+v, want the update delivered after the lookup", st)
	}
	d := r.srv.Delivered()
	if len(d) != 1 || d[0].ID != "77" || d[0].IntegrationID != "ERP-77" {
		t.Fatalf("delivered %+v, want the update with id 77", d)
	}
	requests, lists := r.srv.Requests(), r.srv.Lists()
	r.kasa(t, `{"integration_id":"ERP-77","balance":"11"}`)
	testrig.WaitFor(t, "second update", 15*time.Second, r.settled(t))
	d = r.srv.Delivered()
	if len(d) != 2 || d[1].ID != "77" || !strings.Contains(string(d[1].Column), `"11.00"`) {
		t.Fatalf("delivered %+v, want the second update with id 77", d)
	}
	if r.srv.Requests()-requests != 1 || r.srv.Lists() != lists {
		t.Errorf("second update: %d requests, %d lookups; want one request, no lookup (the id is remembered)",
			r.srv.Requests()-requests, r.srv.Lists()-lists)
	}
	// Not found: a dead letter that says so.
	r.kasa(t, `{"integration_id":"ERP-404","balance":"1"}`)
	testrig.WaitFor(t, "dead", 15*time.Second, func() bool { return r.stats(t).Dead == 1 })
	dead, err := r.q.List(outbox.Dead, 0)
	if err != nil || len(dead) != 1 || !strings.Contains(dead[0].DeadReason, `no kasa card with integration_id "ERP-404"`) {
		t.Fatalf("dead letters %+v %v, want one naming the missing card", dead, err)
	}
}

// A kasa lookup against a list that ignores its filter and has more rows
// than a lookup reads cannot decide: the update waits (counted), it is
// not dead-lettered.
func TestKasaLookupUndecidedWaits(t *testing.T) {
	r := newDeliveryRig(t)
	r.srv.RequireKasaID(true)
	r.srv.IgnoreListFilters(true)
	for i := range 1200 {
		r.srv.AddKasaCard(fmt.Sprint(1+i), fmt.Sprint("ERP-", i))
	}
	r.run(t)
	r.kasa(t, `{"integration_id":"ERP-NEW","balance":"1"}`)
	testrig.WaitFor(t, "undecided", 15*time.Second, func() bool { return r.stats(t).Undecided == 1 })
	st := r.stats(t)
	if st.Dead != 0 || st.Pending != 1 || !strings.Contains(st.UndecidedReason, "ignores the integration_id filter") {
		t.Fatalf("stats %+v, want the update waiting for a lookup that cannot decide", st)
	}
}

// A special code that must be looked up before it is sent
// again, against a list call that ignores its filter over 1,200 codes:
// the lookup cannot decide. The record backs off like a send (attempts
// grow, each wait within the capped exponential backoff), status counts
// it and says why, and an operator's forced retry sends it without
// looking. Before, it waited silently and a forced retry looked again.
func TestUndecidedLookupBacksOffIsCountedAndForced(t *testing.T) {
	r := newDeliveryRig(t)
	ctx := context.Background()
	c, err := oduyo.New(oduyo.Config{BaseURL: r.srv.URL(), APIKey: r.srv.APIKey, Username: r.srv.Username, Password: r.srv.Password})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1200 {
		col, _, _ := records.NormalizeSpecialCode(fmt.Appendf(nil, `{"integration_id":"OLD-%d","code":"C%d"}`, i, i))
		if err := c.CreateSpecialCode(ctx, "", col); err != nil {
			t.Fatal(err)
		}
	}
	r.srv.IgnoreListFilters(true)
	col, key, _ := records.NormalizeSpecialCode([]byte(`{"integration_id":"S-NEW","code":"N"}`))
	acc, err := r.lq.Enqueue(ctx, localapi.Record{Kind: localapi.KindSpecialCode, Key: key, Column: col})
	if err != nil {
		t.Fatal(err)
	}
	r.s.SetBootSequence(acc.ID) // enqueued by an earlier process: looked up first
	r.run(t)
	var waits []time.Duration
	for attempt := 1; attempt <= 4; attempt++ {
		var it outbox.Item
		testrig.WaitFor(t, fmt.Sprint("attempt ", attempt), 15*time.Second, func() bool {
			items, _ := r.q.List(outbox.Pending, 0)
			if len(items) == 1 && items[0].Attempts == attempt && !items[0].InFlight {
				it = items[0]
				return true
			}
			return false
		})
		if !it.Undecided {
			t.Fatalf("attempt %d: %+v, want it marked undecided", attempt, it)
		}
		waits = append(waits, it.NextAttempt.Sub(r.clock.Now()))
		if attempt < 4 {
			r.clock.Advance(it.NextAttempt.Sub(r.clock.Now()) + time.Millisecond)
		}
	}
	// Full jitter at 0.5 of min(RetryMax, RetryBase * 2^(n-1)).
	for i, w := range waits {
		if want := time.Duration(float64(time.Second<<i) * 0.5); w != want {
			t.Errorf("wait after attempt %d: %s, want %s (backoff like a send)", i+1, w, want)
		}
	}
	st := r.stats(t)
	if st.Undecided != 1 || !strings.Contains(st.UndecidedReason, "ignores the integration_id filter") || len(r.srv.Delivered()) != 1200 {
		t.Fatalf("stats %+v, %d records: want one undecided, with why, nothing created", st, len(r.srv.Delivered()))
	}
	if err := r.lq.Retry(acc.ID, true); err != nil {
		t.Fatal(err)
	}
	testrig.WaitFor(t, "sent", 15*time.Second, r.settled(t))
	if st := r.stats(t); st.Undecided != 0 || st.Delivered != 1 || len(r.srv.Delivered()) != 1201 {
		t.Fatalf("after the forced retry: %+v, %d records", st, len(r.srv.Delivered()))
	}
}
