package outbox

// The janitor keeps the queue's own bookkeeping bounded: idempotency keys,
// dead letters, card aliases and delivered marks. It runs in its own
// goroutine, every Options.JanitorEvery of the queue's clock (Options.Clock,
// read every second) whether or not the queue is full, and at once (at
// most every janitorQuiet when it finds nothing) when an enqueue is
// refused as full or the queue drains.
// What it removes goes through the commit pipeline like every other write
// (one transaction, the counters in step), at most pruneChunk entries of
// each kind per transaction, so that a big backlog never makes one huge
// commit. Freed pages are reused by the next records at once (the size
// check counts live content, not the file), and a drained file that is
// mostly free space is compacted (compact.go).
//
// Bounds:
//   - idempotency keys: remembered IdempotencyTTL (7 days) after their
//     first use, then forgotten (idempotency.go);
//   - dead letters: kept Options.DeadLetterTTL (default 30 days) after
//     they died, then expired; beyond Options.DeadLetterMax (default
//     10,000) the oldest (lowest id) expire first even when younger;
//   - card aliases and delivered marks: kept while their card may still
//     have a pending update; of cards with nothing pending, at most
//     Options.CardLimit (10,000) of each kind and MaxSize/16 bytes, and
//     none older than Options.CardTTL (30 days), oldest first (cards.go,
//     pruneCards).
//
// It also counts each kind (entries and the bytes of their pages) for
// Stats, from bbolt's bucket statistics, at start and after every run:
// reading them never walks the buckets.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the janitor's bounds.
const (
	DefaultDeadLetterTTL = 30 * 24 * time.Hour
	DefaultDeadLetterMax = 10_000
	defaultJanitorEvery  = 5 * time.Minute
)

// pruneChunk bounds the entries of one kind one prune transaction removes;
// maxPruneRounds the transactions of one run (the next run goes on).
const (
	pruneChunk     = 1000
	maxPruneRounds = 1000
)

// janitorPoll is how often (real time, nanoseconds) the janitor reads
// the queue's clock to see whether JanitorEvery has passed on it: a read,
// no I/O. It owns no timer of that clock, whose timers are the loop's
// alone. A second; tests shorten it (read when a queue opens).
var janitorPoll atomic.Int64

func init() { janitorPoll.Store(int64(time.Second)) }

// janitorQuiet: after a run that removed nothing, kicks (a full queue, a
// drain) are ignored for this long (real time), so that a caller hammering
// a full queue does not turn every refusal into a commit.
const janitorQuiet = 10 * time.Second

// janitorRecount: a queue that changed is counted again after this long
// (real time), so that status follows it without a walk per change.
const janitorRecount = 10 * time.Second

// BookCount is one kind of bookkeeping: entries and the bytes of the
// pages that hold them.
type BookCount struct {
	Count int   `json:"count"`
	Bytes int64 `json:"bytes"`
}

// Bookkeeping is what the queue keeps beside its records (Stats).
type Bookkeeping struct {
	Aliases         BookCount // names of cards linked to their key (buckets "alias", "alias_at")
	DeliveredMarks  BookCount // newest delivered update per card (buckets "done", "done_at")
	IdempotencyKeys BookCount // producers' keys (buckets "idem", "idem_at")
	DeadLetters     BookCount // records the server refused (bucket "dead"); Count is exact
	// CountedAt is when the janitor counted them (zero: not yet); the
	// dead letters' count is always the current one.
	CountedAt time.Time
}

// The buckets of each kind: the first holds the entries, the others
// their indexes.
var (
	aliasBuckets = [][]byte{bucketAlias, bucketAliasAt}
	markBuckets  = [][]byte{bucketDone, bucketDoneAt}
	idemBuckets  = [][]byte{bucketIdem, bucketIdemAge}
	deadBuckets  = [][]byte{bucketDead}
)

// bookState is the janitor's (its goroutine's, but for mu).
type bookState struct {
	kick chan struct{}
	done chan struct{}
	stop chan struct{} // closed by tests that want no janitor (export_test.go)

	mu    sync.Mutex
	books Bookkeeping

	deadNext    time.Time // queue clock: no dead letter expires before it; zero: look
	quiet       time.Time // real time: kicks wait for the timer until then
	countedSig  uint64    // the queue's counters at the last count
	countedReal time.Time // real time of the last count
}

// pruneReq asks the commit pipeline to forget what has outlived its
// bound. The janitor chooses the dead letters (a read beside the loop);
// the commit checks each again.
type pruneReq struct {
	dead  []deadPick
	reply chan pruneRes
}

type deadPick struct {
	id     uint64
	beyond bool // over the count bound (else: expired)
}

// pruneRes is what one prune transaction removed.
type pruneRes struct {
	keys, dead, beyond, cards int
	more                      bool // a kind hit pruneChunk: run again
	err                       error
}

func (*pruneReq) isRequest() {}

func (q *Queue) startJanitor() {
	q.books.kick = make(chan struct{}, 1)
	q.books.done = make(chan struct{})
	q.books.stop = make(chan struct{})
	go q.janitor()
}

// waitJanitor waits for the janitor to end (after quit is closed).
func (q *Queue) waitJanitor() {
	if q.books.done != nil {
		<-q.books.done
	}
}

// kickJanitor asks for a run now (a full queue, a drain).
func (q *Queue) kickJanitor() {
	if q.books.kick == nil {
		return
	}
	select {
	case q.books.kick <- struct{}{}:
	default:
	}
}

func (q *Queue) janitor() {
	defer close(q.books.done)
	q.countBooks()
	every := q.opts.JanitorEvery
	next := q.clock.Now().Add(every)
	poll := time.NewTicker(time.Duration(janitorPoll.Load()))
	defer poll.Stop()
	recount := false // a kick came while quiet: count at the next poll
	for {
		select {
		case <-poll.C:
			now := q.clock.Now()
			// Due, or the clock went back past a period.
			if !now.Before(next) || next.After(now.Add(every)) {
				next = now.Add(every) // time that passes during the run counts
				q.janitorRun()
				recount = false
				continue
			}
			if recount || q.booksStale() {
				q.countBooks()
				recount = false
			}
		case <-q.books.kick:
			if time.Now().Before(q.books.quiet) {
				recount = true
				continue
			}
			if !q.janitorRun() {
				q.books.quiet = time.Now().Add(janitorQuiet)
			}
		case <-q.quit:
			return
		case <-q.books.stop:
			return
		}
	}
}

// booksStale: the queue changed since the last count, which is older than
// janitorRecount (real time).
func (q *Queue) booksStale() bool {
	q.mu.Lock()
	p := &q.pub
	sig := p.enqueued + p.delivered + p.coalesced + p.deadLettered + uint64(p.dead)
	q.mu.Unlock()
	bs := &q.books
	return sig != bs.countedSig && time.Since(bs.countedReal) >= janitorRecount
}

// janitorRun prunes until nothing is left to prune, then counts; it
// reports whether it removed anything.
func (q *Queue) janitorRun() bool {
	var total pruneRes
	for round := 0; round < maxPruneRounds; round++ {
		now := q.clock.Now()
		picks, err := q.pickDead(now)
		if err != nil {
			q.log.Debug("outbox janitor: cannot read the dead letters", "err", err)
		}
		r := &pruneReq{dead: picks, reply: make(chan pruneRes, 1)}
		select {
		case q.reqs <- r:
		case <-q.quit:
			return false
		}
		var res pruneRes
		select {
		case res = <-r.reply:
		case <-q.done:
			return false
		case <-q.quit: // a loop stuck behind a frozen disk never replies
			return false
		}
		if res.err != nil {
			if !errors.Is(res.err, ErrClosed) {
				q.log.Warn("outbox janitor: pruning failed; trying again later", "err", res.err)
			}
			break
		}
		total.keys += res.keys
		total.dead += res.dead
		total.beyond += res.beyond
		total.cards += res.cards
		if !res.more || q.closed() {
			break
		}
	}
	removed := total.keys+total.dead+total.cards > 0
	if removed {
		q.log.Info("outbox bookkeeping pruned", "idempotency_keys", total.keys, "dead_letters_expired", total.dead-total.beyond,
			"card_entries", total.cards)
	}
	if total.beyond > 0 {
		q.log.Warn("outbox: oldest dead letters expired before their time: more than the dead-letter bound",
			"expired", total.beyond, "max", q.opts.DeadLetterMax)
	}
	q.countBooks()
	return removed
}

// pickDead finds dead letters to expire: beyond the count bound (lowest
// ids first) and older than DeadLetterTTL. The scan of their headers runs
// only when one may have expired since the last (deadNext).
func (q *Queue) pickDead(now time.Time) ([]deadPick, error) {
	bs := &q.books
	var picks []deadPick
	err := q.view(func(t *txb) error {
		picked := map[uint64]bool{}
		c := t.dead.Cursor()
		if over := int(getCounter(t.meta, metaDead)) - q.opts.DeadLetterMax; over > 0 {
			for k, _ := c.First(); k != nil && len(picks) < min(over, pruneChunk); k, _ = c.Next() {
				if len(k) == 8 {
					picks = append(picks, deadPick{id: idFromKey(k), beyond: true})
					picked[idFromKey(k)] = true
				}
			}
		}
		ttl := q.opts.DeadLetterTTL
		if !bs.deadNext.IsZero() && now.Before(bs.deadNext) && !bs.deadNext.After(now.Add(ttl)) {
			return nil // nothing has expired yet (and the clock did not go back)
		}
		cut := now.Add(-ttl).UnixNano()
		var oldestKept int64
		full := false
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 || picked[idFromKey(k)] {
				continue
			}
			at, ok := deadAt(v)
			if !ok {
				continue // an undecodable header: only the count bound removes it
			}
			if at < cut && !full {
				picks = append(picks, deadPick{id: idFromKey(k)})
				full = len(picks) >= 2*pruneChunk
				continue
			}
			if oldestKept == 0 || at < oldestKept {
				oldestKept = at
			}
		}
		switch {
		case full:
			bs.deadNext = time.Time{}
		case oldestKept == 0:
			bs.deadNext = now.Add(ttl) // none, or all picked: a new one dies no earlier than now
		default:
			bs.deadNext = time.Unix(0, oldestKept).Add(ttl)
		}
		return nil
	})
	return picks, err
}

// deadAt reads when a stored dead letter died (its creation when it has
// no such time) from the record's header, without its payload.
func deadAt(b []byte) (int64, bool) {
	if len(b) < 2 || b[0] != recordVersion {
		return 0, false
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > uint64(len(b)-1-w) {
		return 0, false
	}
	var m struct {
		Created int64 `json:"c"`
		DeadAt  int64 `json:"da"`
	}
	if json.Unmarshal(b[1+w:1+w+int(n)], &m) != nil {
		return 0, false
	}
	if m.DeadAt != 0 {
		return m.DeadAt, true
	}
	return m.Created, m.Created != 0
}

// applyPrune runs in the commit pipeline (commit.go): it forgets expired
// idempotency keys, the dead letters picked (each checked again: a retry
// may have revived it, or it may have died again since), and what
// pruneCards finds, at most pruneChunk of each.
func (q *Queue) applyPrune(t *txb, r *pruneReq, now time.Time, c *counters) (pruneRes, error) {
	var res pruneRes
	n, err := pruneIdem(t.tx.Bucket(bucketIdem), t.tx.Bucket(bucketIdemAge), now, pruneChunk)
	if err != nil {
		return res, fmt.Errorf("prune idempotency keys: %w", err)
	}
	res.keys = n
	res.more = n >= pruneChunk
	cut := now.Add(-q.opts.DeadLetterTTL).UnixNano()
	for _, p := range r.dead {
		k := idKey(p.id)
		v := t.dead.Get(k)
		if v == nil {
			continue
		}
		if p.beyond {
			if c.dead <= q.opts.DeadLetterMax {
				continue
			}
		} else if at, ok := deadAt(v); !ok || at >= cut {
			continue
		}
		if err := t.dead.Delete(k); err != nil {
			return res, fmt.Errorf("expire dead letter %d: %w", p.id, err)
		}
		c.dead--
		res.dead++
		if p.beyond {
			res.beyond++
		}
	}
	// More to pick only when this pick was full and did remove (a clock
	// that went back between the pick and this check removes nothing:
	// the next period looks again).
	res.more = res.more || (len(r.dead) >= pruneChunk && res.dead > 0)
	n, err = q.pruneCards(t.tx, now, pruneChunk)
	if err != nil {
		return res, fmt.Errorf("prune card bookkeeping: %w", err)
	}
	res.cards = n
	res.more = res.more || n >= pruneChunk
	return res, nil
}

// finishPrune answers a prune once its commit is done (loop goroutine): a
// drained file that lost bookkeeping is considered for compaction.
func (q *Queue) finishPrune(r *pruneReq, result any, err error) {
	res, _ := result.(pruneRes)
	if err != nil {
		res = pruneRes{err: err}
	}
	if res.err == nil && res.keys+res.dead+res.cards > 0 && q.ls.c.pending == 0 {
		q.ls.drained = true
	}
	r.reply <- res
}

// countBooks reads bbolt's statistics of the bookkeeping buckets
// (janitor goroutine).
func (q *Queue) countBooks() {
	q.mu.Lock()
	p := &q.pub
	q.books.countedSig = p.enqueued + p.delivered + p.coalesced + p.deadLettered + uint64(p.dead)
	q.mu.Unlock()
	q.books.countedReal = time.Now()
	var b Bookkeeping
	err := q.view(func(t *txb) error {
		count := func(names [][]byte) BookCount {
			var bc BookCount
			for i, n := range names {
				bk := t.tx.Bucket(n)
				if bk == nil {
					continue
				}
				s := bk.Stats()
				if i == 0 {
					bc.Count = s.KeyN
				}
				bc.Bytes += int64(s.BranchAlloc + s.LeafAlloc + s.InlineBucketInuse)
			}
			return bc
		}
		b.Aliases, b.DeliveredMarks = count(aliasBuckets), count(markBuckets)
		b.IdempotencyKeys, b.DeadLetters = count(idemBuckets), count(deadBuckets)
		return nil
	})
	if err != nil {
		q.log.Debug("outbox janitor: cannot count the bookkeeping", "err", err)
		return
	}
	b.CountedAt = q.clock.Now()
	q.books.mu.Lock()
	q.books.books = b
	q.books.mu.Unlock()
}

// bookkeeping is the last count, with the dead letters' exact count.
func (q *Queue) bookkeeping(dead int) Bookkeeping {
	q.books.mu.Lock()
	b := q.books.books
	q.books.mu.Unlock()
	b.DeadLetters.Count = dead
	return b
}

// kickJanitorIfFull: a refusal for a full queue asks the janitor to look
// at once; what fills the queue may have outlived its bound.
func (q *Queue) kickJanitorIfFull(err error) {
	if errors.Is(err, ErrFull) {
		q.kickJanitor()
	}
}
