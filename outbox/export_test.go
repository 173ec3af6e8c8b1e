package outbox

import (
	"encoding/json"
	"fmt"
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
