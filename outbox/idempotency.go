package outbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A producer's own idempotency key. An Entry with IdempotencyKey set is
// stored at most once per key: a repeat with the same kind and payload
// returns the item first stored (its id, key and idempotency key;
// nothing new is stored, even when that item was delivered since), and a
// repeat with another kind or payload fails with ErrIdempotencyConflict.
// The key is checked and remembered in the transaction that stores the
// item, so a crash cannot keep one without the other. Keys are remembered
// for IdempotencyTTL after their first use (by the queue's clock), then
// forgotten: by the janitor (janitor.go) in the background, full queue or
// not, and a few at a time by later enqueues. A key older than that but
// not yet forgotten still answers as above. The key is the item's
// IdempotencyKey, the one the sender passes on.

// IdempotencyTTL is how long a producer's idempotency key is remembered.
const IdempotencyTTL = 7 * 24 * time.Hour

// MaxIdempotencyKeyLen bounds Entry.IdempotencyKey.
const MaxIdempotencyKeyLen = 128

// pruneIdemPerEnqueue bounds the expired keys one enqueue forgets.
const pruneIdemPerEnqueue = 8

var (
	bucketIdem    = []byte("idem")    // key -> created(8) id(8) sha256(32) item key
	bucketIdemAge = []byte("idem_at") // created(8) key -> nil, for forgetting
)

// ErrIdempotencyConflict: the idempotency key was used for another record.
var ErrIdempotencyConflict = errors.New("idempotency key already used for another record")

// validIdempotencyKey: 1..128 printable ASCII characters (0x20–0x7E),
// not starting or ending with a space (HTTP would trim it).
func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > MaxIdempotencyKeyLen || k[0] == ' ' || k[len(k)-1] == ' ' {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

func entryDigest(e Entry) [32]byte {
	h := sha256.New()
	h.Write([]byte(e.Kind))
	h.Write([]byte{0})
	h.Write(e.Payload)
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// replay looks e's idempotency key up: ok with the first item when e
// repeats it, ErrIdempotencyConflict when the key was used otherwise.
func (t *txb) replay(e Entry) (Item, bool, error) {
	if e.IdempotencyKey == "" {
		return Item{}, false, nil
	}
	v := t.tx.Bucket(bucketIdem).Get([]byte(e.IdempotencyKey))
	if len(v) < 48 {
		return Item{}, false, nil
	}
	d := entryDigest(e)
	if !bytes.Equal(v[16:48], d[:]) {
		return Item{}, false, fmt.Errorf("enqueue: %w (first used for item %d)", ErrIdempotencyConflict, binary.BigEndian.Uint64(v[8:16]))
	}
	return Item{ID: binary.BigEndian.Uint64(v[8:16]), Kind: e.Kind, Key: string(v[48:]), IdempotencyKey: e.IdempotencyKey,
		Created: time.Unix(0, int64(binary.BigEndian.Uint64(v[:8]))), Coalesce: e.Coalesce}, true, nil
}

// remember stores the new item's producer's idempotency key; it forgets
// a few expired keys.
func (t *txb) remember(e Entry, it Item, now time.Time) error {
	if e.IdempotencyKey == "" {
		return nil
	}
	keys, ages := t.tx.Bucket(bucketIdem), t.tx.Bucket(bucketIdemAge)
	if _, err := pruneIdem(keys, ages, now, pruneIdemPerEnqueue); err != nil {
		return err
	}
	d := entryDigest(e)
	at := uint64(max(unixNano(now), 0))
	v := make([]byte, 0, 48+len(it.Key))
	v = binary.BigEndian.AppendUint64(v, at)
	v = binary.BigEndian.AppendUint64(v, it.ID)
	v = append(append(v, d[:]...), it.Key...)
	if err := keys.Put([]byte(e.IdempotencyKey), v); err != nil {
		return fmt.Errorf("store idempotency key: %w", err)
	}
	return ages.Put(append(binary.BigEndian.AppendUint64(nil, at), e.IdempotencyKey...), nil)
}

// pruneIdem forgets up to max keys first used more than IdempotencyTTL
// ago, oldest first; it returns how many it forgot.
func pruneIdem(keys, ages *bolt.Bucket, now time.Time, max int) (int, error) {
	limit := now.Add(-IdempotencyTTL).UnixNano()
	c := ages.Cursor()
	var old [][]byte
	for k, _ := c.First(); k != nil && len(old) < max; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) >= limit {
			break
		}
		old = append(old, bytes.Clone(k))
	}
	for _, k := range old {
		if err := ages.Delete(k); err != nil {
			return 0, err
		}
		// Only if the key still points at this use of it.
		if v := keys.Get(k[8:]); len(v) >= 8 && bytes.Equal(v[:8], k[:8]) {
			if err := keys.Delete(k[8:]); err != nil {
				return 0, err
			}
		}
	}
	return len(old), nil
}
