package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/outbox"
)

func newTestSender(t *testing.T, timeout time.Duration) (*Sender, *oduyotest.Server) {
	t.Helper()
	srv := oduyotest.NewServer()
	t.Cleanup(srv.Close)
	c, err := oduyo.New(oduyo.Config{BaseURL: srv.URL(), APIKey: srv.APIKey, Username: srv.Username, Password: srv.Password, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return NewSender(c), srv
}

func specialCode(t *testing.T, id uint64, attempts int, column string) outbox.Item {
	t.Helper()
	col, key, err := records.NormalizeSpecialCode([]byte(column))
	if err != nil {
		t.Fatal(err)
	}
	return outbox.Item{ID: id, Kind: outbox.KindSpecialCode, Key: key, Payload: col, IdempotencyKey: "idem-" + key, Attempts: attempts}
}

// A special code whose create timed out after the server stored it is
// looked up at the next attempt and counts as delivered: one record on
// the server.
func TestSenderLooksUpAfterUnknownOutcome(t *testing.T) {
	s, srv := newTestSender(t, 300*time.Millisecond)
	s.SetBootSequence(0) // every item was enqueued by this process
	it := specialCode(t, 1, 0, `{"integration_id":"S-7","code":"ÇĞ-7"}`)
	srv.FailNext(1, oduyotest.Fault{Stored: true, Delay: 10 * time.Second})
	if r := s.Send(context.Background(), it); r.Verdict != outbox.Retry {
		t.Fatalf("first attempt: %+v", r)
	}
	if srv.Lists() != 0 {
		t.Errorf("a first attempt of this process was looked up (%d lists)", srv.Lists())
	}
	it.Attempts = 1
	if r := s.Send(context.Background(), it); r.Verdict != outbox.Delivered {
		t.Fatalf("second attempt: %+v", r)
	}
	if d := srv.Delivered(); len(d) != 1 || srv.Requests() != 1 || srv.Lists() != 1 {
		t.Errorf("delivered %d, requests %d, lists %d: want one record, one create, one lookup", len(d), srv.Requests(), srv.Lists())
	}
}

// Items accepted by an earlier process may have been in flight when it
// died: their first attempt in this process is looked up; a not-found
// record is created.
func TestSenderLooksUpItemsOfAnEarlierProcess(t *testing.T) {
	s, srv := newTestSender(t, 5*time.Second)
	// The earlier process stored S-1 and died before it recorded the answer.
	if r := s.Send(context.Background(), specialCode(t, 100, 0, `{"integration_id":"S-1","code":"A"}`)); r.Verdict != outbox.Delivered {
		t.Fatal(r)
	}
	s.SetBootSequence(2)
	lists := srv.Lists()
	for _, tc := range []struct {
		it          outbox.Item
		lookup      bool
		newRecords  int
		description string
	}{
		{specialCode(t, 1, 0, `{"integration_id":"S-1","code":"A"}`), true, 0, "stored before the crash"},
		{specialCode(t, 2, 0, `{"integration_id":"S-2","code":"B"}`), true, 1, "not stored before the crash"},
		{specialCode(t, 3, 0, `{"integration_id":"S-3","code":"C"}`), false, 1, "enqueued by this process"},
	} {
		before := len(srv.Delivered())
		if r := s.Send(context.Background(), tc.it); r.Verdict != outbox.Delivered {
			t.Fatalf("%s: %+v", tc.description, r)
		}
		looked := srv.Lists() > lists
		lists = srv.Lists()
		if looked != tc.lookup || len(srv.Delivered())-before != tc.newRecords {
			t.Errorf("%s: looked up %v, %d new records; want %v, %d", tc.description, looked, len(srv.Delivered())-before, tc.lookup, tc.newRecords)
		}
	}
	for _, d := range srv.Delivered() {
		if d.Duplicate {
			t.Errorf("duplicate delivery %+v", d)
		}
	}
}

// A lookup that cannot answer keeps the record waiting: it is neither
// sent again nor dead-lettered.
func TestSenderWaitsWhenTheLookupFails(t *testing.T) {
	s, srv := newTestSender(t, 5*time.Second)
	srv.FailNextList(1, oduyotest.Fault{HTML: true})
	r := s.Send(context.Background(), specialCode(t, 1, 1, `{"integration_id":"S-1","code":"A"}`))
	if r.Verdict != outbox.Retry || !strings.Contains(r.Reason, "before sending again") || srv.Requests() != 0 {
		t.Errorf("result %+v, %d creates", r, srv.Requests())
	}
}

// One owner of the re-login: a 401 that survives a fresh login costs one
// login and two requests, and the record is dead-lettered naming the
// credentials; refused credentials at login keep the records waiting.
func TestSenderPersistentUnauthorized(t *testing.T) {
	s, srv := newTestSender(t, 5*time.Second)
	srv.FailAlways(oduyotest.Fault{Status: 401})
	col, key, _ := records.NormalizeKasa([]byte(`{"id":960}`))
	r := s.Send(context.Background(), outbox.Item{ID: 1, Kind: outbox.KindKasa, Key: key, Payload: col})
	if r.Verdict != outbox.Reject || !strings.Contains(r.Reason, "credentials") {
		t.Errorf("result %+v", r)
	}
	if srv.Logins() != 2 || srv.Requests() != 2 {
		t.Errorf("logins %d requests %d, want 2 and 2 (login, send, re-login, send)", srv.Logins(), srv.Requests())
	}
	srv.ClearFaults()
	srv.SetCredentials("other-key", "other-user", "other-password")
	srv.ExpireSessions()
	r = s.Send(context.Background(), outbox.Item{ID: 2, Kind: outbox.KindKasa, Key: key, Payload: col})
	if r.Verdict != outbox.Retry || !strings.Contains(r.Reason, "credentials refused") {
		t.Errorf("refused login: %+v", r)
	}
}
