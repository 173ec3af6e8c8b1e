package outbox_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// One damaged record out of 50 is dead-lettered by itself with the reason
// "unreadable record", once; the file is not quarantined and the other
// 49 are delivered.
func TestUnreadableRecordIsDeadLetteredAlone(t *testing.T) {
	logs := &testrig.Buffer{}
	e := newEnv(t, func(o *outbox.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	var ids []uint64
	for i := range 50 {
		ids = append(ids, enq(t, e.q, outbox.KindKasa, fmt.Sprintf("kasa:%d", i), i, true).ID)
	}
	garbage := []byte("\x01\x7f{not a header")
	// The first record: the one the old open-time check decoded.
	if err := e.q.SetRecordForTest(ids[0], outbox.Pending, garbage); err != nil {
		t.Fatal(err)
	}
	if err := e.q.Close(); err != nil {
		t.Fatal(err)
	}
	q, err := outbox.Open(e.opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	e.q = q
	t.Cleanup(func() { _ = q.Close() })
	if st := stats(t, q); st.Quarantined != "" || st.Pending != 50 {
		t.Fatalf("after reopen: quarantined %q, pending %d; want the file kept with its 50 items", st.Quarantined, st.Pending)
	}
	e.run(t)
	testrig.WaitFor(t, "49 delivered and 1 dead", 15*time.Second, func() bool {
		st := stats(t, q)
		return st.Delivered == 49 && st.Dead == 1 && st.Pending == 0
	})
	dead, err := q.List(outbox.Dead, 0)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead list: %v %v", dead, err)
	}
	d := dead[0]
	if d.ID != ids[0] || d.Key != "kasa:0" || d.Kind != outbox.KindUnreadable || !strings.HasPrefix(d.DeadReason, "unreadable record") {
		t.Fatalf("dead letter %+v, want item %d of kasa:0 with reason unreadable record", d, ids[0])
	}
	var kept struct {
		Raw string `json:"unreadable_record_base64"`
	}
	if err := json.Unmarshal(d.Payload, &kept); err != nil {
		t.Fatalf("dead payload is not JSON: %v", err)
	}
	if raw, _ := base64.StdEncoding.DecodeString(kept.Raw); string(raw) != string(garbage) {
		t.Fatalf("stored bytes not kept: %q", raw)
	}
	if n := strings.Count(logs.String(), "unreadable"); n != 1 {
		t.Fatalf("%d log lines about the unreadable record, want 1:\n%s", n, logs.String())
	}
	if err := q.Retry(d.ID); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("retry of an unreadable dead letter: %v, want a refusal", err)
	}
	if err := q.Drop(d.ID); err != nil {
		t.Fatalf("drop: %v", err)
	}
}
