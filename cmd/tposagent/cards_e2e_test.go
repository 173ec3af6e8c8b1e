package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/internal/testrig"
)

func (f *fixture) retryHTTP(id uint64, query string) (int, string) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/outbox/%d/retry%s", f.client.BaseURL, id, query), nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

// Stale retries through the real binary: retrying a dead update of card 821
// while a newer update of the card is pending answers 409 naming it;
// force=true takes it, and Ödüyo ends on the newer state. Before, the
// retry answered 200 and, with the newer one in flight, Ödüyo could end
// on the older balance.
func TestStaleKasaRetryConflictE2E(t *testing.T) {
	f := newFixture(t)
	f.oduyo.Reject("821")
	f.start()
	ctx := context.Background()
	c, old := f.postKey("/v1/kasa", "", `{"id":821,"balance":"1"}`)
	if c != http.StatusAccepted {
		t.Fatalf("post: %d", c)
	}
	if _, err := f.WaitStatus(ctx, 20*time.Second, 20*time.Millisecond, func(s localapi.Status) bool { return s.Outbox.Dead == 1 }); err != nil {
		t.Fatal(err)
	}
	f.oduyo.ClearFaults()
	f.oduyo.SetDown(true)
	c, newer := f.postKey("/v1/kasa", "", `{"id":821,"balance":"2"}`)
	if c != http.StatusAccepted {
		t.Fatalf("post newer: %d", c)
	}
	code, body := f.retryHTTP(old.ID, "")
	if code != http.StatusConflict || !strings.Contains(body, fmt.Sprintf("item %d", newer.ID)) {
		t.Fatalf("retry with a newer update pending: %d %s, want 409 naming item %d", code, body, newer.ID)
	}
	out, err := f.CLI("outbox", "retry", fmt.Sprint(old.ID))
	if err == nil || !strings.Contains(out, fmt.Sprintf("item %d", newer.ID)) {
		t.Fatalf("CLI retry: %v %s, want a refusal naming item %d", err, out, newer.ID)
	}
	if code, body := f.retryHTTP(old.ID, "?force=true"); code != http.StatusOK {
		t.Fatalf("forced retry: %d %s", code, body)
	}
	f.oduyo.SetDown(false)
	testrig.WaitFor(t, "both delivered", 30*time.Second, func() bool { return len(f.oduyo.Delivered()) == 2 })
	d := f.oduyo.Delivered()
	if !strings.Contains(string(d[len(d)-1].Column), `"2.00"`) {
		t.Errorf("Ödüyo ends on %s, want the newer balance", d[len(d)-1].Column)
	}
	f.stop()
}

// Kasa lookups and undecided lookups through the real binary. A kasa update without an
// id that Ödüyo refuses is looked up by integration_id and delivered with
// the card's id. A special code that must be looked up before it is sent
// again, against a list call that ignores its filter over 1,200 codes,
// waits; status and doctor count it and say why; `outbox retry --force ID`
// sends it without looking.
func TestLookupsThroughTheBinaryE2E(t *testing.T) {
	f := newFixture(t)
	f.oduyo.RequireKasaID(true)
	f.oduyo.AddKasaCard("77", "ERP-77")
	for i := range 1200 {
		f.oduyo.AddSpecialCode(fmt.Sprint("OLD-", i), fmt.Sprint("C", i))
		f.oduyo.AddKasaCard(fmt.Sprint(1000+i), fmt.Sprint("OTHER-", i))
	}
	f.start()
	ctx := context.Background()
	if c, _ := f.postKey("/v1/kasa", "", `{"integration_id":"ERP-77","balance":"5"}`); c != http.StatusAccepted {
		t.Fatalf("post kasa: %d", c)
	}
	testrig.WaitFor(t, "kasa delivered with its id", 20*time.Second, func() bool {
		d := f.oduyo.Delivered()
		return len(d) == 1 && d[0].ID == "77"
	})

	f.oduyo.IgnoreListFilters(true)
	f.oduyo.FailNext(1, oduyotest.Fault{Status: 503, Only: oduyotest.KindSpecialCode}) // one failed attempt: the next is looked up first
	c, acc := f.postKey("/v1/special-codes", "", `{"integration_id":"S-NEW","code":"N"}`)
	if c != http.StatusAccepted {
		t.Fatalf("post code: %d", c)
	}
	s, err := f.WaitStatus(ctx, 30*time.Second, 20*time.Millisecond, func(s localapi.Status) bool { return s.Outbox.Undecided == 1 })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Outbox.UndecidedReason, "ignores the integration_id filter") {
		t.Errorf("undecided reason %q", s.Outbox.UndecidedReason)
	}
	warned := false
	for _, w := range s.Warnings {
		warned = warned || strings.Contains(w, "tposagent outbox retry --force ID")
	}
	if !warned {
		t.Errorf("no status warning for the undecided record: %q", s.Warnings)
	}
	if out, _ := f.CLI("doctor", "--lang", "en"); !strings.Contains(out, "1 record(s) wait for a lookup that cannot decide") {
		t.Errorf("doctor does not count the undecided record:\n%s", out)
	}
	out, err := f.CLI("outbox", "retry", fmt.Sprint(acc.ID), "--force")
	if err != nil {
		t.Fatalf("outbox retry --force: %v %s", err, out)
	}
	testrig.WaitFor(t, "the code created", 20*time.Second, func() bool { return len(f.oduyo.Delivered()) == 2 })
	s, err = f.WaitStatus(ctx, 20*time.Second, 20*time.Millisecond, func(s localapi.Status) bool {
		return s.Outbox.Pending == 0 && s.Outbox.InFlight == 0
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Outbox.Undecided != 0 || s.Outbox.Dead != 0 {
		t.Errorf("after the forced retry: %+v", s.Outbox)
	}
	f.stop()
}
