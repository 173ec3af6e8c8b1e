package outbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The card table: one record, one key. A target record may be known by
// several names — a kasa card by its Ödüyo id and by its ERP
// integration_id. An Entry's Key is the record's own name (the card's id
// when it has one); its Aliases are other names that point at it.
//
// One alias links to one record. The bucket "alias" maps an alias to the
// Key of the newest entry that carried it:
//
//   - An entry with Aliases goes under its own Key. Each alias is linked
//     to that Key. When an alias was linked to another record (two card ids
//     with one integration_id), the two records stay apart — own keys,
//     nothing coalesced across them — and the link moves to the newest
//     pair; the conflict is logged once and counted in Stats.
//   - An entry without Aliases whose Key is a linked alias (an update that
//     names the card by its integration_id alone) goes under the linked
//     record's key.
//   - Items still pending under an alias's own name (updates sent before
//     the card's id was known) are coalesced into the record's key by the
//     next coalescing entry of the record, when the alias was not linked
//     to another record. One of them being sent at that moment cannot be
//     replaced; it may reach the server after the new entry.
//
// Keys are resolved in the loop goroutine when a commit is planned (the
// commit locks them), by one read of the file for all the commit's
// entries; nothing about cards is kept in memory, so memory does not grow
// with the number of cards ever seen.
//
// A retry never regresses a record. The bucket "done" keeps, per key of
// coalescing items, the id and time of the newest delivery. Retry of a
// dead coalescing item fails with ErrSuperseded when a newer item of its
// record was delivered, is being sent or is pending; ForceRetry sends it
// anyway.
//
// Bounds: links and delivered marks are bookkeeping, kept while the
// record may still have a pending update. Beyond Options.CardLimit
// entries of a kind, or MaxSize/16 bytes of a kind, or once older than
// Options.CardTTL (since last written), those of records with nothing
// pending are pruned, oldest first (pruneCards; the background janitor
// calls it, and every delivery prunes a few). The buckets "alias_at" and
// "done_at" order them by age; the meta bucket counts them and their
// bytes. Space is given back by the compaction after a drain.

var (
	bucketAlias   = []byte("alias")    // name -> 0x00 at(8) key (older files: key alone, no age)
	bucketAliasAt = []byte("alias_at") // at(8) name -> nil
	bucketDone    = []byte("done")     // key -> id(8) at(8) of the newest delivered coalescing item
	bucketDoneAt  = []byte("done_at")  // at(8) key -> nil
)

// Counters of the card table in the meta bucket.
var (
	metaCardsIndexed = []byte("cards_indexed") // set once the age indexes and counters exist
	metaLinks        = []byte("card_links")
	metaLinkBytes    = []byte("card_link_bytes")
	metaMarks        = []byte("card_marks")
	metaMarkBytes    = []byte("card_mark_bytes")
)

// Defaults of the card table's bounds.
const (
	DefaultCardLimit = 10_000
	DefaultCardTTL   = 30 * 24 * time.Hour
	// linkTouchEvery: a link is rewritten with a new age at most this often
	// while its record keeps being updated.
	linkTouchEvery = time.Hour
	// entryOverhead approximates bbolt's per-element cost in a leaf.
	entryOverhead = 16
	// prunePerDelivery bounds the entries one delivery prunes.
	prunePerDelivery = 4
)

// ErrSuperseded: a newer item of the same record was delivered, is being
// sent or is pending; sending this dead one now could leave the record in
// the older state.
var ErrSuperseded = errors.New("a newer update of the same record exists")

// cardState is what the queue keeps about cards in memory: the conflicts
// seen (bounded) and where pruning resumes.
type cardState struct {
	mu             sync.Mutex // guards the conflict fields (Stats reads them)
	conflicts      uint64
	lastConflict   string
	lastConflictAt time.Time
	logged         map[string]bool // recent conflicts already logged
	loggedOrder    []string

	// Where the last prune stopped; touched only inside write
	// transactions, which bbolt runs one at a time.
	pruneFrom [2][]byte
}

const maxLoggedConflicts = 256

// noteConflict logs a link that moves from one record to another, once
// per (alias, from, to) among the recent ones, and counts it for Stats.
func (q *Queue) noteConflict(name, from, to string, now time.Time) {
	cs := &q.cards
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.conflicts++
	cs.lastConflict = fmt.Sprintf("%s was linked to %s and is now linked to %s: the two are kept apart as different records", name, from, to)
	cs.lastConflictAt = now
	id := name + "\x00" + from + "\x00" + to
	if cs.logged[id] {
		return
	}
	if cs.logged == nil {
		cs.logged = map[string]bool{}
	}
	if len(cs.loggedOrder) >= maxLoggedConflicts {
		delete(cs.logged, cs.loggedOrder[0])
		cs.loggedOrder = cs.loggedOrder[1:]
	}
	cs.logged[id] = true
	cs.loggedOrder = append(cs.loggedOrder, id)
	q.log.Warn("outbox: one name given to two records; they are kept apart and the name now means the newer one",
		"name", name, "was", from, "now", to)
}

// parseLink reads a value of the alias bucket.
func parseLink(v []byte) (at int64, target string, aged bool) {
	if len(v) >= 9 && v[0] == 0 {
		return int64(binary.BigEndian.Uint64(v[1:9])), string(v[9:]), true
	}
	return 0, string(v), false
}

func linkValue(target string, at int64) []byte {
	v := make([]byte, 9, 9+len(target))
	binary.BigEndian.PutUint64(v[1:], uint64(max(at, 0)))
	return append(v, target...)
}

func ageKey(at int64, name []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(name)), uint64(max(at, 0))), name...)
}

func hasPendingIn(bykey *bolt.Bucket, key string) bool {
	if bykey == nil || key == "" {
		return false
	}
	p := keyPrefix(key)
	k, _ := bykey.Cursor().Seek(p)
	return k != nil && bytes.HasPrefix(k, p) && len(k) == len(p)+8
}

// resolveCards sets the key of each entry of a commit about to be planned
// (loop goroutine, no commit running): one read of the file for all.
// Earlier entries of the same commit count as stored. On a read error the
// entries keep their own names.
func (q *Queue) resolveCards(ops []request) {
	var reqs []*enqueueReq
	for _, r := range ops {
		if er, ok := r.(*enqueueReq); ok {
			if er.e.name == "" {
				er.e.name = er.e.Key
			}
			er.e.Key, er.e.links, er.e.unlink, er.e.merged = er.e.name, nil, nil, nil
			reqs = append(reqs, er)
		}
	}
	if len(reqs) == 0 {
		return
	}
	overlay := map[string]string{}
	stored := map[string]bool{} // keys of the commit's earlier entries: pending once it commits
	// guard: bbolt panics on a damaged page; that is an error here, not
	// the agent's end (faults.go).
	err := q.guard(func() error {
		return q.db.View(func(tx *bolt.Tx) error {
			for _, r := range reqs {
				resolveEntry(tx, &r.e, overlay, stored)
				stored[r.e.Key] = true
			}
			return nil
		})
	})
	if err != nil {
		q.log.Debug("outbox: card links unreadable; entries keep their names", "err", err)
	}
}

// resolveEntry applies the rules at the top of this file to e.
func resolveEntry(tx *bolt.Tx, e *Entry, overlay map[string]string, stored map[string]bool) {
	alias, bykey := tx.Bucket(bucketAlias), tx.Bucket(bucketByKey)
	get := func(n string) string {
		if v, ok := overlay[n]; ok {
			return v
		}
		if alias == nil {
			return ""
		}
		_, target, _ := parseLink(alias.Get([]byte(n)))
		return target
	}
	merge := func(k string) {
		if k != e.Key && (stored[k] || hasPendingIn(bykey, k)) && !contains(e.merged, k) {
			e.merged = append(e.merged, k)
		}
	}
	if len(e.Aliases) == 0 {
		if l := get(e.Key); l != "" && l != e.Key {
			name := e.Key
			e.Key = l
			merge(name) // left from before the link
			e.links = []string{name}
		}
		return
	}
	if l := get(e.Key); l != "" && l != e.Key {
		// The record's own name was linked elsewhere (files of older
		// versions mapped every name to the first one seen): the same
		// record; its own name needs no link.
		merge(l)
		e.unlink = append(e.unlink, e.Key)
		overlay[e.Key] = ""
	}
	for _, a := range e.Aliases {
		if a == e.Key || contains(e.links, a) {
			continue
		}
		if cur := get(a); cur == "" || cur == a || cur == e.Key {
			merge(a)
		} // else: linked to another record; kept apart (putLinks reports it)
		e.links = append(e.links, a)
		overlay[a] = e.Key
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// coalesceMerged removes the coalescable items pending under the keys e
// takes over (never one in flight) and returns the latest due time and
// the earliest turn among them.
func (t *txb) coalesceMerged(job *commitJob, e Entry, c *counters) (inherit int64, turn uint64, err error) {
	for _, k := range e.merged {
		flying, isFlying := job.flying[k]
		removed := false
		for _, id := range t.keyIDs(k) {
			if isFlying && id == flying && !t.settled[id] { // a result applied earlier in this commit: no longer in flight
				continue
			}
			old, ok, err := t.getItem(id)
			if err != nil || !ok || !old.Coalesce || old.Kind != e.Kind {
				continue
			}
			inherit = max(inherit, unixNano(old.NextAttempt))
			turn = minTurn(turn, old.turnOf())
			if err := t.removePending(id, k); err != nil {
				return 0, 0, err
			}
			c.pending--
			c.coalesced++
			removed = true
		}
		if removed {
			if err := t.reschedule(k); err != nil {
				return 0, 0, err
			}
		}
	}
	return inherit, turn, nil
}

// putLinks stores the links resolveEntry decided (commit goroutine).
func (q *Queue) putLinks(t *txb, e Entry, now time.Time) error {
	if len(e.links) == 0 && len(e.unlink) == 0 {
		return nil
	}
	for _, n := range e.unlink {
		if err := q.deleteLink(t.tx, n, now); err != nil {
			return err
		}
	}
	for _, a := range e.links {
		if err := q.setLink(t.tx, a, e.Key, now, true); err != nil {
			return err
		}
	}
	return nil
}

// setLink links name to target. report: a link that moves from another
// record is a conflict to report.
func (q *Queue) setLink(tx *bolt.Tx, name, target string, now time.Time, report bool) error {
	if err := ensureCardIndex(tx, now); err != nil {
		return err
	}
	alias, ages, meta := tx.Bucket(bucketAlias), tx.Bucket(bucketAliasAt), tx.Bucket(bucketMeta)
	n := []byte(name)
	old := alias.Get(n)
	at, cur, aged := parseLink(old)
	if cur == target && aged && now.UnixNano()-at < int64(linkTouchEvery) && now.UnixNano() >= at {
		return nil
	}
	if report && cur != "" && cur != name && cur != target {
		q.noteConflict(name, cur, target, now)
	}
	if old != nil {
		if err := removeEntry(alias, ages, meta, metaLinks, metaLinkBytes, n, old, at); err != nil {
			return err
		}
	}
	v := linkValue(target, now.UnixNano())
	return addEntry(alias, ages, meta, metaLinks, metaLinkBytes, n, v, now.UnixNano())
}

func (q *Queue) deleteLink(tx *bolt.Tx, name string, now time.Time) error {
	if err := ensureCardIndex(tx, now); err != nil {
		return err
	}
	alias := tx.Bucket(bucketAlias)
	old := alias.Get([]byte(name))
	if old == nil {
		return nil
	}
	at, _, _ := parseLink(old)
	return removeEntry(alias, tx.Bucket(bucketAliasAt), tx.Bucket(bucketMeta), metaLinks, metaLinkBytes, []byte(name), old, at)
}

func entryBytes(name, v []byte) uint64 {
	return uint64(len(name) + len(v) + entryOverhead + 8 + len(name) + entryOverhead)
}

func addEntry(main, ages, meta *bolt.Bucket, countKey, bytesKey, name, v []byte, at int64) error {
	if err := main.Put(name, v); err != nil {
		return err
	}
	if err := ages.Put(ageKey(at, name), nil); err != nil {
		return err
	}
	if err := putCounter(meta, countKey, getCounter(meta, countKey)+1); err != nil {
		return err
	}
	return putCounter(meta, bytesKey, getCounter(meta, bytesKey)+entryBytes(name, v))
}

// removeEntry deletes name (whose value is old, aged at) and its age
// entry. old may point into the page: it is measured before the delete.
func removeEntry(main, ages, meta *bolt.Bucket, countKey, bytesKey, name, old []byte, at int64) error {
	size := entryBytes(name, old)
	if err := main.Delete(name); err != nil {
		return err
	}
	if err := ages.Delete(ageKey(at, name)); err != nil {
		return err
	}
	if err := putCounter(meta, countKey, subFloor(getCounter(meta, countKey), 1)); err != nil {
		return err
	}
	return putCounter(meta, bytesKey, subFloor(getCounter(meta, bytesKey), size))
}

func subFloor(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

// ensureCardIndex builds the age indexes and counters of a file written
// before they existed (once): links without an age get now; old
// self-links (every name was mapped, its own included) are dropped.
func ensureCardIndex(tx *bolt.Tx, now time.Time) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(metaCardsIndexed) != nil {
		return nil
	}
	for _, name := range [][]byte{bucketAlias, bucketAliasAt, bucketDone, bucketDoneAt} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("card index: %w", err)
		}
	}
	alias, aliasAt, done, doneAt := tx.Bucket(bucketAlias), tx.Bucket(bucketAliasAt), tx.Bucket(bucketDone), tx.Bucket(bucketDoneAt)
	var nLinks, linkBytes uint64
	err := inChunks(alias, func(k, v []byte) error {
		at, target, aged := parseLink(v)
		if !aged {
			at = now.UnixNano()
		}
		if target == string(k) || target == "" {
			return alias.Delete(k)
		}
		nv := linkValue(target, at)
		if err := alias.Put(k, nv); err != nil {
			return err
		}
		nLinks++
		linkBytes += entryBytes(k, nv)
		return aliasAt.Put(ageKey(at, k), nil)
	})
	if err != nil {
		return err
	}
	var nMarks, markBytes uint64
	err = inChunks(done, func(k, v []byte) error {
		at := now.UnixNano()
		if len(v) == 16 {
			at = int64(binary.BigEndian.Uint64(v[8:]))
		}
		nMarks++
		markBytes += entryBytes(k, v)
		return doneAt.Put(ageKey(at, k), nil)
	})
	if err != nil {
		return err
	}
	for _, c := range []struct {
		k []byte
		v uint64
	}{{metaLinks, nLinks}, {metaLinkBytes, linkBytes}, {metaMarks, nMarks}, {metaMarkBytes, markBytes}, {metaCardsIndexed, 1}} {
		if err := putCounter(meta, c.k, c.v); err != nil {
			return err
		}
	}
	return nil
}

// inChunks calls fn for every entry of b, a few thousand read at a time,
// so that fn may change b and memory stays bounded whatever its size.
func inChunks(b *bolt.Bucket, fn func(k, v []byte) error) error {
	type kv struct{ k, v []byte }
	var from []byte
	for {
		var chunk []kv
		c := b.Cursor()
		k, v := c.First()
		if from != nil {
			k, v = c.Seek(from)
			if k != nil && bytes.Equal(k, from) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(chunk) < 4096; k, v = c.Next() {
			chunk = append(chunk, kv{bytes.Clone(k), bytes.Clone(v)})
		}
		if len(chunk) == 0 {
			return nil
		}
		for _, e := range chunk {
			if err := fn(e.k, e.v); err != nil {
				return err
			}
		}
		from = chunk[len(chunk)-1].k
	}
}

// canonical returns the key that name is linked to, or name.
func (t *txb) canonical(name string) string {
	b := t.tx.Bucket(bucketAlias)
	if b == nil {
		return name
	}
	if _, target, _ := parseLink(b.Get([]byte(name))); target != "" {
		return target
	}
	return name
}

// linkedKey is what dispatch tells the sender about an item's record: the
// key its Key is linked to now, or "".
func linkedKey(tx *bolt.Tx, key string) string {
	b := tx.Bucket(bucketAlias)
	if b == nil {
		return ""
	}
	if _, target, _ := parseLink(b.Get([]byte(key))); target != key {
		return target
	}
	return ""
}

// applyLink records what a sender learned about an item's record
// (Result.Link, e.g. the card's Ödüyo id found by its integration_id):
// the item's Key is linked to it, unless it is linked to another record
// already (a newer pair from the producer wins).
func (q *Queue) applyLink(t *txb, it Item, res Result, now time.Time) error {
	if res.Link == "" || res.Link == it.Key || len(res.Link) > maxKeyLen {
		return nil
	}
	if cur := t.canonical(it.Key); cur != it.Key && cur != res.Link {
		return nil
	}
	return q.setLink(t.tx, it.Key, res.Link, now, false)
}

// noteDelivered remembers the newest delivered coalescing item of its
// record, and prunes a few card entries.
func (q *Queue) noteDelivered(t *txb, it Item, now time.Time) error {
	if !it.Coalesce {
		return nil
	}
	if err := ensureCardIndex(t.tx, now); err != nil {
		return err
	}
	key := []byte(t.canonical(it.Key))
	done, doneAt, meta := t.tx.Bucket(bucketDone), t.tx.Bucket(bucketDoneAt), t.meta
	old := done.Get(key)
	if len(old) == 16 && binary.BigEndian.Uint64(old) > it.ID {
		return nil
	}
	if old != nil {
		at := int64(0)
		if len(old) == 16 {
			at = int64(binary.BigEndian.Uint64(old[8:]))
		}
		if err := removeEntry(done, doneAt, meta, metaMarks, metaMarkBytes, key, old, at); err != nil {
			return err
		}
	}
	v := binary.BigEndian.AppendUint64(idKey(it.ID), uint64(max(unixNano(now), 0)))
	if err := addEntry(done, doneAt, meta, metaMarks, metaMarkBytes, key, v, unixNano(now)); err != nil {
		return err
	}
	_, err := q.pruneCards(t.tx, now, prunePerDelivery)
	return err
}

// pruneCards removes up to max links and delivered marks of records with
// nothing pending: those beyond the count or byte bound, oldest first, and
// those older than Options.CardTTL. The background janitor calls it;
// every delivery calls it for a few.
func (q *Queue) pruneCards(tx *bolt.Tx, now time.Time, max int) (removed int, err error) {
	if max <= 0 {
		return 0, nil
	}
	if err := ensureCardIndex(tx, now); err != nil {
		return 0, err
	}
	bykey := tx.Bucket(bucketByKey)
	alias := tx.Bucket(bucketAlias)
	linkFree := func(name []byte) bool {
		_, target, _ := parseLink(alias.Get(name))
		return !hasPendingIn(bykey, string(name)) && !hasPendingIn(bykey, target)
	}
	markFree := func(key []byte) bool { return !hasPendingIn(bykey, string(key)) }
	n, err := q.pruneKind(tx, bucketAlias, bucketAliasAt, metaLinks, metaLinkBytes, &q.cards.pruneFrom[0], linkFree, now, max)
	if err != nil {
		return n, err
	}
	m, err := q.pruneKind(tx, bucketDone, bucketDoneAt, metaMarks, metaMarkBytes, &q.cards.pruneFrom[1], markFree, now, max-n)
	return n + m, err
}

// cardByteLimit is the bound on the bytes of one kind of card entry.
func (q *Queue) cardByteLimit() uint64 { return uint64(max(q.opts.MaxSize/16, 64<<10)) }

func (q *Queue) pruneKind(tx *bolt.Tx, mainName, agesName, countKey, bytesKey []byte, from *[]byte,
	free func(name []byte) bool, now time.Time, max int) (int, error) {
	if max <= 0 {
		return 0, nil
	}
	main, ages, meta := tx.Bucket(mainName), tx.Bucket(agesName), tx.Bucket(bucketMeta)
	count, size := getCounter(meta, countKey), getCounter(meta, bytesKey)
	overCount := int64(count) - int64(q.opts.CardLimit)
	overBytes := int64(size) - int64(q.cardByteLimit())
	over := func() bool { return overCount > 0 || overBytes > 0 }
	cutoff := now.Add(-q.opts.CardTTL).UnixNano()
	c := ages.Cursor()
	// Nothing to do (the common case) costs one cursor step.
	if k, _ := c.First(); k == nil || (!over() && (len(k) < 8 || int64(binary.BigEndian.Uint64(k)) >= cutoff)) {
		*from = nil
		return 0, nil
	}
	start := *from
	var k []byte
	if start != nil {
		k, _ = c.Seek(start)
	} else {
		k, _ = c.First()
	}
	wrapped := start == nil
	budget := 16*max + 64
	var victims [][]byte
	for budget > 0 && len(victims) < max {
		if k == nil {
			if wrapped {
				break
			}
			wrapped = true
			k, _ = c.First()
			continue
		}
		if wrapped && start != nil && bytes.Compare(k, start) >= 0 {
			k = nil
			break // went all the way round
		}
		budget--
		if len(k) < 8 {
			victims = append(victims, bytes.Clone(k)) // not an age entry: drop it
			k, _ = c.Next()
			continue
		}
		if at := int64(binary.BigEndian.Uint64(k)); !over() && at >= cutoff {
			if wrapped {
				k = nil
				break
			}
			wrapped = true
			k, _ = c.First()
			continue
		}
		if free(k[8:]) {
			victims = append(victims, bytes.Clone(k))
			if v := main.Get(k[8:]); v != nil {
				overCount--
				overBytes -= int64(entryBytes(k[8:], v))
			}
		}
		k, _ = c.Next()
	}
	// The next call resumes here only when this one ran out of steps
	// (a long run of entries of cards still pending): otherwise it starts
	// again from the oldest, since an entry skipped as pending may be free
	// now, and the bound prunes oldest first.
	if k != nil && budget == 0 {
		*from = bytes.Clone(k)
	} else {
		*from = nil
	}
	removed := 0
	for _, ak := range victims {
		if len(ak) < 8 {
			if err := ages.Delete(ak); err != nil {
				return removed, err
			}
			continue
		}
		at, name := int64(binary.BigEndian.Uint64(ak)), ak[8:]
		v := main.Get(name)
		vat := int64(-1)
		switch {
		case v == nil:
		case bytes.Equal(mainName, bucketAlias):
			vat, _, _ = parseLink(v)
		case len(v) == 16:
			vat = int64(binary.BigEndian.Uint64(v[8:]))
		}
		if vat != at { // a stale age entry: the name was written again since
			if err := ages.Delete(ak); err != nil {
				return removed, err
			}
			continue
		}
		if err := removeEntry(main, ages, meta, countKey, bytesKey, name, v, at); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// CardCounts are the sizes of the card table (status, metrics).
type CardCounts struct {
	Links, LinkBytes, Marks, MarkBytes uint64
}

// cardCounts reads the card table's counters (any transaction).
func cardCounts(tx *bolt.Tx) CardCounts {
	m := tx.Bucket(bucketMeta)
	if m == nil {
		return CardCounts{}
	}
	return CardCounts{Links: getCounter(m, metaLinks), LinkBytes: getCounter(m, metaLinkBytes),
		Marks: getCounter(m, metaMarks), MarkBytes: getCounter(m, metaMarkBytes)}
}

// prepareRetry checks that retrying the dead item does not send an older
// state of its record after a newer one (unless force): none delivered,
// none being sent (busy), none pending. It moves the item to its record's
// key.
func (t *txb) prepareRetry(it *Item, force bool, busy map[uint64]bool) error {
	canon := t.canonical(it.Key)
	if it.Coalesce && !force {
		for _, k := range uniq(canon, it.Key) {
			if v := t.tx.Bucket(bucketDone).Get([]byte(k)); len(v) == 16 {
				if newer := binary.BigEndian.Uint64(v); newer > it.ID {
					at := time.Unix(0, int64(binary.BigEndian.Uint64(v[8:])))
					return fmt.Errorf("%w: item %d of %s was delivered at %s; retrying would leave the older state last (force to send it anyway)",
						ErrSuperseded, newer, k, at.UTC().Format(time.RFC3339))
				}
			}
		}
		for _, k := range uniq(canon, it.Key) {
			for _, id := range t.keyIDs(k) {
				if id <= it.ID {
					continue
				}
				other, ok, err := t.getItem(id)
				if err != nil || !ok || !other.Coalesce || other.Kind != it.Kind {
					continue
				}
				state := "is pending"
				if busy[id] {
					state = "is being sent"
				}
				return fmt.Errorf("%w: item %d of %s %s; retrying would leave the older state last (force to send it anyway)",
					ErrSuperseded, id, k, state)
			}
		}
	}
	it.Key = canon
	return nil
}

func uniq(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// supersededAcrossLink: a coalescing item left under a name of its record
// that is now linked to the record's key (an update sent by the
// integration_id alone, in flight when the card's id was linked) has a
// newer item of its record pending or delivered under that key: sending
// it again would put the older state last, so it is dropped as coalesced.
func (t *txb) supersededAcrossLink(it Item) bool {
	if !it.Coalesce {
		return false
	}
	canon := t.canonical(it.Key)
	if canon == it.Key {
		return false
	}
	if v := t.tx.Bucket(bucketDone).Get([]byte(canon)); len(v) == 16 && binary.BigEndian.Uint64(v) > it.ID {
		return true
	}
	ids := t.keyIDs(canon)
	for i := len(ids) - 1; i >= 0 && ids[i] > it.ID; i-- {
		if other, ok, err := t.getItem(ids[i]); err == nil && ok && other.Coalesce && other.Kind == it.Kind {
			return true
		}
	}
	return false
}

// ForceRetry is Retry without the ErrSuperseded check: the dead item is
// sent even though a newer update of its record exists. On a pending
// item it also means "send it without looking it up first" (Item.SkipLookup).
func (q *Queue) ForceRetry(id uint64) error { return q.admin(opRetryForce, id) }
