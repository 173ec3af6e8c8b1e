package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
)

// epochs publishes the client of the agent that is up now (nil while it
// is down) and wakes the producers when that changes.
type epochs struct {
	mu      sync.Mutex
	cur     *localapi.Client
	changed chan struct{}
}

func newEpochs() *epochs { return &epochs{changed: make(chan struct{})} }

func (e *epochs) get() (*localapi.Client, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cur, e.changed
}

func (e *epochs) set(c *localapi.Client) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cur = c
	close(e.changed)
	e.changed = make(chan struct{})
}

// ledger is what the producers were told: every 202.
type ledger struct {
	mu      sync.Mutex
	kasa    map[string][]int // card -> accepted notes, in order of acceptance
	codes   map[string]bool  // accepted special code ids
	unknown int              // no answer (the agent died): maybe stored, maybe not
	refused map[int]int      // status -> count, for answers other than 202
	bad     []string         // 4xx answers: the producer's or the agent's bug
}

func TestKills(t *testing.T) {
	kills := envInt(t, "TPOSAGENT_CHAOS_KILLS", 200)
	if testing.Short() && os.Getenv("TPOSAGENT_CHAOS_KILLS") == "" {
		kills = 30
	}
	producers := max(envInt(t, "TPOSAGENT_CHAOS_PRODUCERS", 4), 1)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TPOSAGENT_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TPOSAGENT_CHAOS_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("kills=%d producers=%d seed=%d (TPOSAGENT_CHAOS_SEED=%d reproduces the schedule)", kills, producers, seed, seed)
	const cards = 20

	f := newFixture(t, "", nil)
	dbPath := filepath.Join(f.dataDir, "outbox.db")
	led := &ledger{kasa: map[string][]int{}, codes: map[string]bool{}, refused: map[int]int{}}
	eps := newEpochs()
	stop := make(chan struct{})
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: producers}}
	t0 := time.Now()

	// Producers: producer p owns the cards c with c%producers == p, so a
	// card's updates are enqueued one after another and their notes grow
	// in the order the agent accepted them.
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(p)+1))
			var mine []string
			for c := p; c < cards; c += producers {
				mine = append(mine, fmt.Sprintf("card-%02d", c))
			}
			next := map[string]int{}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, changed := eps.get()
				if c == nil {
					select {
					case <-changed:
					case <-stop:
						return
					}
					continue
				}
				var path string
				var col map[string]any
				var accept func()
				if len(mine) > 0 && rng.IntN(2) == 0 {
					card := mine[rng.IntN(len(mine))]
					next[card]++
					n := next[card]
					path = "/v1/kasa"
					col = map[string]any{"integration_id": card, "status": "1", "note": strconv.Itoa(n), "balance": fmt.Sprintf("%d,50", n)}
					accept = func() { led.kasa[card] = append(led.kasa[card], n) }
				} else {
					id := fmt.Sprintf("sc-%d-%06d", p, i)
					path = "/v1/special-codes"
					col = map[string]any{"integration_id": id, "code": "Ğİ-" + id, "status": "1"}
					accept = func() { led.codes[id] = true }
				}
				code, body, err := post(context.Background(), hc, c, path, col)
				led.mu.Lock()
				switch {
				case err != nil:
					led.unknown++
				case code == http.StatusAccepted:
					accept()
				default:
					led.refused[code]++
					if code < 500 {
						led.bad = append(led.bad, fmt.Sprintf("%s %v: %d %s", path, col, code, body))
					}
				}
				led.mu.Unlock()
				if err != nil { // the agent is gone: wait for the next one
					select {
					case <-changed:
					case <-stop:
						return
					}
				}
			}
		}()
	}

	// Ödüyo flaps down and up.
	var flaps atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 1000))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(200+rng.IntN(800)) * time.Millisecond):
			}
			f.oduyo.SetDown(true)
			flaps.Add(1)
			select {
			case <-stop:
			case <-time.After(time.Duration(50+rng.IntN(350)) * time.Millisecond):
			}
			f.oduyo.SetDown(false)
		}
	}()

	// The killer: start, let it run a random while, SIGKILL, check the file.
	rng := rand.New(rand.NewPCG(seed, 0))
	checks, startupKills, absent := 0, 0, 0
	// The file exists once an agent has got far enough to create it; a
	// kill before that (during the first start-up) leaves no file, which
	// is a valid outcome. Once it has existed, it must always be there.
	existed := false
	for i := range kills {
		if rng.IntN(10) == 0 {
			// A kill during startup: opening and checking the file.
			f.launch()
			time.Sleep(time.Duration(rng.IntN(30_000)) * time.Microsecond)
			startupKills++
		} else {
			if err := f.start(); err != nil {
				t.Errorf("start %d: %v", i, err)
				break
			}
			eps.set(f.api())
			time.Sleep(time.Duration(rng.IntN(250_000)) * time.Microsecond)
			eps.set(nil)
		}
		f.kill()
		if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) && !existed {
			absent++
			continue
		}
		existed = true
		if err := checkBolt(dbPath); err != nil {
			t.Errorf("after kill %d: bbolt check: %v", i+1, err)
		} else {
			checks++
		}
	}
	close(stop)
	wg.Wait()
	f.oduyo.SetDown(false)
	killPhase := time.Since(t0)

	// The last run drains everything, then stops cleanly.
	f.mustStart()
	st := f.waitDrained(2 * time.Minute)
	if st.Outbox.Dead != 0 {
		t.Errorf("%d dead letters after the drain; want 0", st.Outbox.Dead)
	}
	f.stop()
	if err := checkBolt(dbPath); err != nil {
		t.Errorf("final bbolt check: %v", err)
	} else {
		checks++
	}

	lost, dups := verifyDeliveries(t, f.oduyo.Delivered(), led)
	led.mu.Lock()
	items := len(led.codes)
	for _, n := range led.kasa {
		items += len(n)
	}
	for _, b := range led.bad {
		t.Errorf("refused with 4xx: %s", b)
	}
	t.Logf("RESULT kills=%d startup_kills=%d kills_before_file=%d items=%d lost=%d duplicates=%d unknown=%d refused=%v flaps=%d bbolt_checks=%d deliveries=%d kill_phase=%s total=%s",
		kills, startupKills, absent, items, lost, dups, led.unknown, led.refused, flaps.Load(), checks, len(f.oduyo.Delivered()),
		killPhase.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	led.mu.Unlock()
	// A kill or an outage can cut short the sends in flight (Concurrency,
	// 4) and those that succeeded but whose deletion was not yet committed:
	// a worker takes its next item (of another card) while its last result
	// waits for the group commit, so on a slow, shared disk a worker may
	// finish a few sends per commit. Each duplicate was checked above to be
	// a re-send of its record's last delivery; this bound only catches a
	// queue that re-sends wholesale.
	const concurrency, sendsPerCommit = 4, 4
	if bound := (kills + int(flaps.Load())) * concurrency * sendsPerCommit; dups > bound {
		t.Errorf("%d duplicates, more than the %d sends that kills and outages can have cut short", dups, bound)
	}
	if items == 0 {
		t.Errorf("no item was accepted: the scenario proved nothing")
	}
}

// verifyDeliveries checks the server's record against the ledger and
// returns the number of lost items and of duplicate deliveries.
func verifyDeliveries(t *testing.T, ds []oduyotest.Delivery, led *ledger) (lost, dups int) {
	t.Helper()
	type last struct {
		key  string
		note int
	}
	prev := map[string]last{}
	maxNote := map[string]int{}
	codes := map[string]bool{}
	for _, d := range ds {
		var col map[string]string
		if err := json.Unmarshal(d.Column, &col); err != nil {
			t.Errorf("delivery %d: column %s: %v", d.Seq, d.Column, err)
			continue
		}
		rec := d.Kind + ":" + d.IntegrationID
		p, seen := prev[rec]
		if d.Duplicate {
			dups++
			// Only the item that was in flight may come again: nothing
			// else of its record may have been delivered in between.
			if !seen || p.key != d.IdempotencyKey {
				t.Errorf("delivery %d (%s): duplicate key %s is not a re-send of the record's last delivery", d.Seq, rec, d.IdempotencyKey)
			}
		}
		switch d.Kind {
		case oduyotest.KindKasa:
			n, err := strconv.Atoi(col["note"])
			if err != nil || col["balance"] != fmt.Sprintf("%d.50", n) {
				t.Errorf("delivery %d: kasa column %s is not one that was sent", d.Seq, d.Column)
				continue
			}
			if seen && (n < p.note || n == p.note && !d.Duplicate) {
				t.Errorf("delivery %d: card %s update %d delivered after %d", d.Seq, d.IntegrationID, n, p.note)
			}
			prev[rec] = last{d.IdempotencyKey, n}
			maxNote[d.IntegrationID] = max(maxNote[d.IntegrationID], n)
		case oduyotest.KindSpecialCode:
			if col["code"] != "Ğİ-"+d.IntegrationID {
				t.Errorf("delivery %d: special code column %s is not one that was sent", d.Seq, d.Column)
			}
			prev[rec] = last{key: d.IdempotencyKey}
			codes[d.IntegrationID] = true
		}
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	for card, notes := range led.kasa {
		for _, n := range notes {
			// Delivered, or superseded by a later update that was.
			if maxNote[card] < n {
				lost++
				t.Errorf("card %s: accepted update %d lost (last delivered %d)", card, n, maxNote[card])
			}
		}
	}
	for id := range led.codes {
		if !codes[id] {
			lost++
			t.Errorf("special code %s accepted but never delivered", id)
		}
	}
	return lost, dups
}
