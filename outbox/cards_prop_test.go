package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// cardServer models Ödüyo for the card table's property test: an update
// lands on the card its id names, or, without one, the card its item's
// key or linked key names (the agent's sender adds that id), else on the
// pseudo-card of its integration_id. It goes down and up at random.
type cardServer struct {
	mu      sync.Mutex
	rnd     *rand.Rand
	down    float64
	applied map[string][]int // card -> seqs in the order they landed
	wrong   []string         // updates that landed on another card than they were meant for
}

type propPayload struct {
	Seq  int    `json:"seq"`
	ID   string `json:"id,omitempty"`
	Int  string `json:"integration_id,omitempty"`
	Card string `json:"card"` // the card the update was meant for when it was enqueued
}

func (s *cardServer) Send(_ context.Context, it outbox.Item) outbox.Result {
	var p propPayload
	if err := json.Unmarshal(it.Payload, &p); err != nil {
		return outbox.Result{Verdict: outbox.Reject, Reason: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rnd.Float64() < s.down {
		return outbox.Result{Verdict: outbox.Retry, Reason: "down"}
	}
	card := p.ID
	if card == "" {
		for _, k := range []string{it.Key, it.LinkedKey} {
			if id, ok := strings.CutPrefix(k, "kasa:id:"); ok {
				card = id
				break
			}
		}
	}
	if card == "" {
		card = "int:" + p.Int
	}
	if card != p.Card {
		s.wrong = append(s.wrong, fmt.Sprintf("seq %d meant for %s landed on %s (key %s, linked %s)", p.Seq, p.Card, card, it.Key, it.LinkedKey))
	}
	s.applied[card] = append(s.applied[card], p.Seq)
	return outbox.Result{Verdict: outbox.Delivered}
}

func (s *cardServer) Probe(context.Context) error { return nil }

func (s *cardServer) setDown(p float64) {
	s.mu.Lock()
	s.down = p
	s.mu.Unlock()
}

// The card table under random updates with random (id, integration_id)
// pairs, some integration_ids shared by several ids, Ödüyo going down and
// up: two distinct ids never share a key, every update lands on the card
// it was meant for, each card's updates land in order, and each card ends
// on its newest state.
func TestCardTableProperty(t *testing.T) {
	seeds := 16
	if testing.Short() {
		seeds = 3
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { cardTableRun(t, seed) })
	}
}

func cardTableRun(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 99))
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db"), RetryBase: time.Millisecond, RetryMax: 4 * time.Millisecond,
		Rand: func() float64 { return 0.5 }})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	srv := &cardServer{rnd: rand.New(rand.NewPCG(seed, 7)), down: 0.3, applied: map[string][]int{}}
	stop := testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return q.Run(ctx, srv) })
	defer stop()

	link := map[string]string{} // the model: integration_id -> the id of its newest pair
	newest := map[string]int{}  // card -> seq of its newest update
	for seq := 1; seq <= 600; seq++ {
		id, intID := "", ""
		// Integration ids outnumber card ids (some are shared by several
		// cards over time); many updates name a card by its integration
		// id alone, before and after its id is known.
		switch r := rnd.IntN(20); {
		case r < 4:
			id = fmt.Sprint(rnd.IntN(8))
		case r < 13:
			intID = fmt.Sprint("E", rnd.IntN(40))
		default:
			id, intID = fmt.Sprint(rnd.IntN(8)), fmt.Sprint("E", rnd.IntN(40))
		}
		card := id
		switch {
		case id != "" && intID != "":
			link[intID] = id
		case id == "":
			if card = link[intID]; card == "" {
				card = "int:" + intID
			}
		}
		e := kasaEntry(id, intID, seq)
		p, _ := json.Marshal(propPayload{Seq: seq, ID: id, Int: intID, Card: card})
		e.Payload = p
		it, err := q.Enqueue(context.Background(), e)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		want := "kasa:id:" + card
		if strings.HasPrefix(card, "int:") {
			want = "kasa:" + card
		}
		if it.Key != want {
			t.Fatalf("seq %d (id %q, integration_id %q) stored under %q, want %q", seq, id, intID, it.Key, want)
		}
		newest[card] = seq
		if rnd.IntN(50) == 0 { // Ödüyo goes down hard, or comes back
			srv.setDown(float64(rnd.IntN(2)) * 0.9)
		}
		if rnd.IntN(4) == 0 {
			time.Sleep(time.Duration(rnd.IntN(300)) * time.Microsecond)
		}
	}
	srv.setDown(0)
	testrig.WaitFor(t, "drain", 30*time.Second, func() bool {
		st, err := q.Stats()
		return err == nil && st.Pending == 0 && st.InFlight == 0
	})
	if err := q.CheckIndex(); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, w := range srv.wrong {
		t.Error(w)
	}
	for card, seqs := range srv.applied {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Errorf("card %s: updates landed out of order: %v", card, seqs)
				break
			}
		}
	}
	for card, seq := range newest {
		if strings.HasPrefix(card, "int:") {
			continue // an update by integration_id alone before any pair may be replaced by the pair's
		}
		got := srv.applied[card]
		if len(got) == 0 || got[len(got)-1] != seq {
			t.Errorf("card %s ends on %v, want its newest update %d last", card, got, seq)
		}
	}
}
