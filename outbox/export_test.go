package outbox

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BulkLoad writes n pending items over keys keys straight into a new
// file, in big transactions, for the memory benchmark.
func BulkLoad(path string, n, keys int, payload json.RawMessage) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Update(ensureBuckets); err != nil {
		return err
	}
	const chunk = 100_000
	now := time.Now()
	for done := 0; done < n; done += chunk {
		err := db.Update(func(tx *bolt.Tx) error {
			t, err := openTxb(tx)
			if err != nil {
				return err
			}
			for i := done; i < min(done+chunk, n); i++ {
				id, _ := t.items.NextSequence()
				it := Item{ID: id, Kind: KindKasa, Key: fmt.Sprintf("kasa:%d", i%keys), Payload: payload,
					IdempotencyKey: newIdempotencyKey(), Created: now, Coalesce: true}
				if err := t.putPending(&it); err != nil {
					return err
				}
				if i < keys {
					if err := t.reschedule(it.Key); err != nil {
						return err
					}
				}
			}
			return putCounter(t.meta, metaPending, getCounter(t.meta, metaPending)+uint64(min(chunk, n-done)))
		})
		if err != nil {
			return err
		}
	}
	return db.Sync()
}

// EncodeRecordForTest exposes the record codec to the fuzz seeds.
func EncodeRecordForTest(it Item) []byte { return encodeRecord(&it) }

// DecodeRecordForTest exposes the record decoder to the fuzz test.
func DecodeRecordForTest(b []byte) (Item, error) { return decodeRecord(1, b) }

// OpenNaive opens a queue that commits every request in its own
// transaction (one db.Update per item): the naive baseline of the enqueue
// benchmark, on the same layout.
func OpenNaive(opts Options) (*Queue, error) {
	opts.batchLimit = 1
	return Open(opts)
}

// CheckIndex verifies the invariants of the layout: every pending item is
// in bykey and every bykey entry has an item; each key with pending items
// has exactly one sched entry, for its first item, named by that item's
// bykey value; the pending and dead counters match the buckets.
func (q *Queue) CheckIndex() error {
	return q.view(func(t *txb) error {
		items := 0
		if err := t.items.ForEach(func(k, v []byte) error {
			items++
			it, err := decodeRecord(idFromKey(k), v)
			if err != nil {
				return err
			}
			if t.bykey.Get(byKeyKey(it.Key, it.ID)) == nil {
				return fmt.Errorf("item %d not in bykey", it.ID)
			}
			return nil
		}); err != nil {
			return err
		}
		heads := map[string]uint64{}
		entries := 0
		if err := t.bykey.ForEach(func(k, v []byte) error {
			entries++
			n := int(k[0])<<8 | int(k[1])
			key, id := string(k[2:2+n]), idFromKey(k[2+n:])
			if t.items.Get(idKey(id)) == nil {
				return fmt.Errorf("bykey %s/%d without item", key, id)
			}
			if _, ok := heads[key]; !ok {
				heads[key] = id
				head, _, err := t.getItem(id)
				if err != nil {
					return err
				}
				if len(v) != 16 || idFromKey(v[8:]) != head.turnOf() || string(t.sched.Get(v)) != key {
					return fmt.Errorf("head %s/%d: bad sched reference %x", key, id, v)
				}
			} else if len(v) != 0 {
				return fmt.Errorf("non-head %s/%d has sched reference", key, id)
			}
			return nil
		}); err != nil {
			return err
		}
		if entries != items {
			return fmt.Errorf("%d items, %d bykey entries", items, entries)
		}
		sched := 0
		_ = t.sched.ForEach(func(k, v []byte) error { sched++; return nil })
		if sched != len(heads) {
			return fmt.Errorf("%d sched entries for %d keys", sched, len(heads))
		}
		dead := 0
		_ = t.dead.ForEach(func(k, v []byte) error { dead++; return nil })
		if p, d := int(getCounter(t.meta, metaPending)), int(getCounter(t.meta, metaDead)); p != items || d != dead {
			return fmt.Errorf("counters pending %d dead %d, buckets %d %d", p, d, items, dead)
		}
		return nil
	})
}

// SetRecordForTest overwrites the stored bytes of item id in the pending
// (or dead) bucket, as a damaged disk would, leaving the indexes alone.
func (q *Queue) SetRecordForTest(id uint64, state State, raw []byte) error {
	return q.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketItems)
		if state == Dead {
			b = tx.Bucket(bucketDead)
		}
		return b.Put(idKey(id), raw)
	})
}

// StopJanitorForTest ends the janitor and waits for it: its prune
// requests would otherwise join the commits a test arranges.
func (q *Queue) StopJanitorForTest() {
	close(q.books.stop)
	<-q.books.done
}

// HoldWritesForTest takes bbolt's writer lock until release is called, so
// that the requests arriving meanwhile wait for one commit together.
func (q *Queue) HoldWritesForTest() (release func()) {
	held, done, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		_ = q.db.Update(func(*bolt.Tx) error {
			close(held)
			<-done
			return nil
		})
	}()
	<-held
	return func() { close(done); <-finished }
}

// CommittingForTest tells whether a commit is running.
func (q *Queue) CommittingForTest() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pub.committing
}

// QueuedForTest is how many requests wait for the next commit.
func (q *Queue) QueuedForTest() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pub.queued
}

// LeafPagesForTest lists the leaf pages of a closed file, and its page size.
func LeafPagesForTest(path string) (pageSize int, leaves []int, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second, PreLoadFreelist: true})
	if err != nil {
		return 0, nil, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; int64(id)*int64(db.Info().PageSize) < tx.Size(); id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p != nil && p.Type == "leaf" {
				leaves = append(leaves, id)
			}
		}
		return nil
	})
	return db.Info().PageSize, leaves, err
}

// SetNoFreelistForTest rewrites both meta pages of a closed file as if it
// had been written without a freelist (bbolt then rebuilds the freelist
// at a read-write open by walking every page).
func SetNoFreelistForTest(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, boltPageHeader+boltMetaSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return err
	}
	m, ok := parseMeta(b)
	if !ok {
		return fmt.Errorf("meta 0 invalid")
	}
	for _, off := range []int64{0, int64(m.pageSize)} {
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		meta := b[boltPageHeader:]
		binary.LittleEndian.PutUint64(meta[32:], boltNoFreelist)
		h := fnv.New64a()
		_, _ = h.Write(meta[:56])
		binary.LittleEndian.PutUint64(meta[56:], h.Sum64())
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// PanicInBoltOpenForTest makes the next n bbolt opens panic right after
// bbolt has opened the file, as a damaged page would; undo restores.
func PanicInBoltOpenForTest(n int) (undo func()) {
	panicAfterOpenFile = func(bool) {
		if n > 0 {
			n--
			panic("injected: bbolt found a damaged page")
		}
	}
	return func() { panicAfterOpenFile = nil }
}

// CompactLikeWindowsForTest makes compaction close the file, rename and
// open it again (the Windows path), and the next n reopens fail.
func CompactLikeWindowsForTest(failReopens int) (undo func()) {
	was := compactCloseFirst
	compactCloseFirst = true
	reopenFail.Store(int32(failReopens))
	return func() { compactCloseFirst = was; reopenFail.Store(0) }
}

// FailReopensForTest sets how many more reopens fail.
func FailReopensForTest(n int) { reopenFail.Store(int32(n)) }

// BreakMappingForTest passes flags to the open file's next mmap (Unix):
// flags that mmap refuses make bbolt fail to map the file as it grows,
// as a till out of address space or handles does. A reopened file maps
// without them.
func (q *Queue) BreakMappingForTest(flags int) { q.db.MmapFlags = flags }

// PruneCardsForTest runs one pruneCards in its own transaction, as the
// background janitor does.
func (q *Queue) PruneCardsForTest(max int) (removed int, err error) {
	err = q.db.Update(func(tx *bolt.Tx) error {
		var err error
		removed, err = q.pruneCards(tx, q.clock.Now(), max)
		return err
	})
	return removed, err
}

// BulkLinksForTest writes n card links (as files of older versions
// stored them: name -> key, no age) straight into a closed file.
func BulkLinksForTest(path string, n int) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Update(ensureBuckets); err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAlias)
		for i := range n {
			if err := b.Put(fmt.Appendf(nil, "kasa:int:ERP-%08d", i), fmt.Appendf(nil, "kasa:id:%d", i+1)); err != nil {
				return err
			}
		}
		return nil
	})
}

// SetJanitorPollForTest sets how often the janitors of queues opened from
// now on read the clock; undo restores it.
func SetJanitorPollForTest(d time.Duration) (undo func()) {
	was := janitorPoll.Swap(int64(d))
	return func() { janitorPoll.Store(was) }
}

// OldLinksForTest rewrites the card links of a closed file as versions
// before the card table's bounds stored them (name -> key, every name of
// a card, its own included, mapped to the first one seen; no ages, no
// counters).
func OldLinksForTest(path string, links map[string]string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketAlias, bucketAliasAt, bucketDone, bucketDoneAt} {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		for k, v := range links {
			if err := tx.Bucket(bucketAlias).Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{metaCardsIndexed, metaLinks, metaLinkBytes, metaMarks, metaMarkBytes} {
			if err := m.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
