package oduyo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/records"
)

func (h *harness) code(t *testing.T, key, in string) error {
	t.Helper()
	col, _, err := records.NormalizeSpecialCode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	return h.keep(h.c.CreateSpecialCode(context.Background(), key, col))
}

// A create whose answer is lost (the server stored it, then the
// connection was reset or timed out) is found by its integration_id.
func TestFindSpecialCodeAfterLostAnswer(t *testing.T) {
	for _, f := range []oduyotest.Fault{
		{Stored: true, Reset: true},
		{Stored: true, Delay: 30 * time.Second},
	} {
		t.Run(fmt.Sprintf("reset=%v", f.Reset), func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
			found, err := h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"S-9","code":"Ş-9"}`))
			if err != nil || found {
				t.Fatalf("before: found %v err %v", found, err)
			}
			// The connection is reused (the lookup above opened it): the
			// transport must not replay the create by itself.
			h.srv.FailNext(2, f)
			err = h.code(t, "s9", `{"integration_id":"S-9","code":"Ş-9"}`)
			wantClass(t, err, Transient, 0)
			if d := h.srv.Delivered(); len(d) != 1 || h.srv.Requests() != 1 {
				t.Fatalf("delivered %d in %d requests, want the record stored once", len(d), h.srv.Requests())
			}
			h.srv.ClearFaults()
			found, err = h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"S-9","code":"Ş-9"}`))
			if err != nil || !found {
				t.Fatalf("after: found %v err %v", found, err)
			}
			if found, err := h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"S-10","code":"Ş-9"}`)); err != nil || found {
				t.Errorf("another id: found %v err %v", found, err)
			}
			// Another create of the same integration_id with another code
			// is another record.
			if found, err := h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"S-9","code":"Ş-10"}`)); err != nil || found {
				t.Errorf("another code: found %v err %v", found, err)
			}
		})
	}
}

// A server that ignores the filter is read page by page and every row is
// checked here.
func TestFindSpecialCodeFilterIgnored(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 250 {
		if err := h.code(t, fmt.Sprint("k", i), fmt.Sprintf(`{"integration_id":"S-%d","code":"C"}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	h.srv.IgnoreListFilters(true)
	for _, tc := range []struct {
		id    string
		found bool
		lists int
	}{{"S-3", true, 1}, {"S-240", true, 3}, {"S-999", false, 3}} {
		before := h.srv.Lists()
		found, err := h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"`+tc.id+`","code":"C"}`))
		if err != nil || found != tc.found || h.srv.Lists()-before != tc.lists {
			t.Errorf("%s: found %v err %v lists %d, want %v and %d lists", tc.id, found, err, h.srv.Lists()-before, tc.found, tc.lists)
		}
	}
}

// When the lookup cannot answer, it says so: the record must wait, not be
// sent again blindly.
func TestFindSpecialCodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		f     oduyotest.Fault
		class Class
	}{
		{"html", oduyotest.Fault{HTML: true}, Transient},
		{"redirect", oduyotest.Fault{Redirect: "http://portal.example/"}, Transient},
		{"503", oduyotest.Fault{Status: 503}, Transient},
		{"400 json", oduyotest.Fault{Status: 400}, Transient},
		{"status string", oduyotest.Fault{Body: `{"status":"true","data":[{"integration_id":"S-1"}]}`}, Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.srv.FailNextList(1, tc.f)
			found, err := h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"S-1","code":"X"}`))
			h.keep(err)
			if found {
				t.Error("found")
			}
			wantClass(t, err, tc.class, max(tc.f.Status, map[bool]int{true: 302, false: 200}[tc.f.Redirect != ""]))
		})
	}
	t.Run("session expired", func(t *testing.T) {
		h := newHarness(t, nil)
		if err := h.code(t, "a", `{"integration_id":"S-1","code":"X"}`); err != nil {
			t.Fatal(err)
		}
		h.srv.ExpireSessions()
		found, err := h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"S-1","code":"X"}`))
		if err != nil || !found || h.srv.Logins() != 2 {
			t.Errorf("found %v err %v logins %d", found, err, h.srv.Logins())
		}
	})
	t.Run("inconclusive", func(t *testing.T) {
		h := newHarness(t, nil)
		for i := range lookupPageSize*lookupMaxPages + 1 {
			if err := h.code(t, fmt.Sprint("k", i), fmt.Sprintf(`{"integration_id":"S-%d","code":"C"}`, i)); err != nil {
				t.Fatal(err)
			}
		}
		h.srv.IgnoreListFilters(true)
		_, err := h.c.FindSpecialCode(context.Background(), json.RawMessage(`{"integration_id":"S-none","code":"C"}`))
		if !errors.Is(err, ErrLookupInconclusive) {
			t.Errorf("err = %v", err)
		}
		wantClass(t, err, Transient, 0)
	})
}

// FindKasaCard: the card's Ödüyo id by its integration_id, tolerant of
// the list's quirks (spec/oduyo-list.md): a 404 or an empty data mean
// none; every row's integration_id is checked, so a list that ignores its
// filter is paged through; one that has more rows than a lookup reads is
// inconclusive; a found row without a usable id is an error, not "none".
func TestFindKasaCard(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	h.srv.AddKasaCard("5", "K-5")
	for i := range 250 {
		h.srv.AddKasaCard(fmt.Sprint(100+i), fmt.Sprint("OTHER-", i))
	}
	if id, err := h.c.FindKasaCard(ctx, "K-5"); err != nil || id != "5" {
		t.Errorf("found: %q %v", id, err)
	}
	if id, err := h.c.FindKasaCard(ctx, "K-404"); err != nil || id != "" {
		t.Errorf("404: %q %v", id, err)
	}
	h.srv.FailNextList(1, oduyotest.Fault{Body: `{"status":true,"data":[]}`})
	if id, err := h.c.FindKasaCard(ctx, "K-5"); err != nil || id != "" {
		t.Errorf("empty data: %q %v", id, err)
	}
	h.srv.FailNextList(1, oduyotest.Fault{Body: `{"status":true,"data":[{"id":"abc","integration_id":"K-5"}]}`})
	if id, err := h.c.FindKasaCard(ctx, "K-5"); err == nil || id != "" {
		t.Errorf("row without a usable id: %q %v, want an error", id, err)
	}
	h.srv.FailNextList(1, oduyotest.Fault{Body: `{"status":true,"data":[{"id":7,"integration_id":"K-7"}]}`})
	if id, err := h.c.FindKasaCard(ctx, "K-7"); err != nil || id != "7" {
		t.Errorf("numeric id: %q %v", id, err)
	}
	h.srv.IgnoreListFilters(true)
	lists := h.srv.Lists()
	if id, err := h.c.FindKasaCard(ctx, "K-5"); err != nil || id != "5" {
		t.Errorf("list ignoring its filter: %q %v", id, err)
	}
	if id, err := h.c.FindKasaCard(ctx, "K-NONE"); err != nil || id != "" || h.srv.Lists()-lists != 1+3 {
		t.Errorf("none, list ignoring its filter: %q %v after %d calls, want every page read (3)", id, err, h.srv.Lists()-lists-1)
	}
	for i := range 1000 {
		h.srv.AddKasaCard(fmt.Sprint(10_000+i), fmt.Sprint("MORE-", i))
	}
	_, err := h.c.FindKasaCard(ctx, "K-NONE")
	var oe *Error
	if !errors.Is(err, ErrLookupInconclusive) || !errors.As(err, &oe) || oe.Class != Transient {
		t.Errorf("more rows than a lookup reads: %v, want a transient inconclusive error", err)
	}
	if _, err := h.c.FindKasaCard(ctx, ""); !errors.As(err, &oe) || oe.Class != Permanent {
		t.Errorf("no integration_id: %v", err)
	}
}
