package outbox

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket names; see doc.go for the layout.
var (
	bucketItems = []byte("items") // id(8) -> record
	bucketDead  = []byte("dead")  // id(8) -> record
	bucketByKey = []byte("bykey") // len(key)(2) key id(8) -> sched key(16) for the head, else ""
	bucketSched = []byte("sched") // due(8) id(8) -> key   (one per key: its head)
	bucketMeta  = []byte("meta")  // name -> uint64
	allBuckets  = [][]byte{bucketItems, bucketDead, bucketByKey, bucketSched, bucketMeta, bucketAlias, bucketDone, bucketIdem, bucketIdemAge,
		bucketAliasAt, bucketDoneAt, bucketUndecided}
)

// Counters kept in the meta bucket.
var (
	metaPending      = []byte("pending")
	metaDead         = []byte("dead")
	metaEnqueued     = []byte("enqueued")
	metaDelivered    = []byte("delivered")
	metaCoalesced    = []byte("coalesced")
	metaDeadLettered = []byte("dead_lettered")
	metaVersion      = []byte("version")
)

const (
	layoutVersion = 1
	recordVersion = 1
)

var errCorruptRecord = errors.New("corrupt outbox record")

// recordMeta is the JSON header of a stored record; the payload follows it
// verbatim.
type recordMeta struct {
	Kind       Kind   `json:"k"`
	Key        string `json:"key"`
	Idem       string `json:"idem"`
	Created    int64  `json:"c"`
	Attempts   int    `json:"a,omitempty"`
	Next       int64  `json:"n,omitempty"`
	LastError  string `json:"e,omitempty"`
	Coalesce   bool   `json:"co,omitempty"`
	DeadReason string `json:"dr,omitempty"`
	DeadAt     int64  `json:"da,omitempty"`
	Turn       uint64 `json:"t,omitempty"`  // Item.turn
	NoLookup   bool   `json:"nl,omitempty"` // Item.SkipLookup
	Undecided  bool   `json:"u,omitempty"`  // Item.Undecided
}

// encodeRecord: version byte, uvarint length of the JSON header, header,
// payload bytes.
func encodeRecord(it *Item) []byte {
	m := recordMeta{
		Kind: it.Kind, Key: it.Key, Idem: it.IdempotencyKey,
		Created: unixNano(it.Created), Attempts: it.Attempts, Next: unixNano(it.NextAttempt),
		LastError: it.LastError, Coalesce: it.Coalesce, DeadReason: it.DeadReason, DeadAt: unixNano(it.DeadAt),
		NoLookup: it.SkipLookup, Undecided: it.Undecided,
	}
	if it.turn != 0 && it.turn < it.ID {
		m.Turn = it.turn
	}
	var hb [256]byte
	h := m.appendJSON(hb[:0])
	buf := make([]byte, 0, 1+binary.MaxVarintLen32+len(h)+len(it.Payload))
	buf = append(buf, recordVersion)
	buf = binary.AppendUvarint(buf, uint64(len(h)))
	buf = append(buf, h...)
	return append(buf, it.Payload...)
}

// appendJSON appends exactly what json.Marshal(m) returns (FuzzRecordMetaJSON
// holds it to that), without reflection: it runs for every record stored.
func (m *recordMeta) appendJSON(b []byte) []byte {
	b = append(b, `{"k":`...)
	b = appendJSONString(b, string(m.Kind))
	b = append(b, `,"key":`...)
	b = appendJSONString(b, m.Key)
	b = append(b, `,"idem":`...)
	b = appendJSONString(b, m.Idem)
	b = append(b, `,"c":`...)
	b = strconv.AppendInt(b, m.Created, 10)
	if m.Attempts != 0 {
		b = append(b, `,"a":`...)
		b = strconv.AppendInt(b, int64(m.Attempts), 10)
	}
	if m.Next != 0 {
		b = append(b, `,"n":`...)
		b = strconv.AppendInt(b, m.Next, 10)
	}
	if m.LastError != "" {
		b = append(b, `,"e":`...)
		b = appendJSONString(b, m.LastError)
	}
	if m.Coalesce {
		b = append(b, `,"co":true`...)
	}
	if m.DeadReason != "" {
		b = append(b, `,"dr":`...)
		b = appendJSONString(b, m.DeadReason)
	}
	if m.DeadAt != 0 {
		b = append(b, `,"da":`...)
		b = strconv.AppendInt(b, m.DeadAt, 10)
	}
	if m.Turn != 0 {
		b = append(b, `,"t":`...)
		b = strconv.AppendUint(b, m.Turn, 10)
	}
	if m.NoLookup {
		b = append(b, `,"nl":true`...)
	}
	if m.Undecided {
		b = append(b, `,"u":true`...)
	}
	return append(b, '}')
}

// appendJSONString appends s as json.Marshal quotes it. Printable ASCII
// that needs no escape (the usual key, kind and idempotency key) is
// copied; anything else goes through encoding/json, whose escapes (HTML
// characters, U+2028, invalid UTF-8) are then kept as they are.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// decodeRecord parses a stored record; it copies everything it keeps, so
// b may be a slice into the mmap.
func decodeRecord(id uint64, b []byte) (Item, error) {
	if len(b) < 2 || b[0] != recordVersion {
		return Item{}, fmt.Errorf("decode item %d: %w: bad version", id, errCorruptRecord)
	}
	n, w := binary.Uvarint(b[1:])
	if w <= 0 || n > uint64(len(b)-1-w) {
		return Item{}, fmt.Errorf("decode item %d: %w: bad header length", id, errCorruptRecord)
	}
	h := b[1+w : 1+w+int(n)]
	var m recordMeta
	if err := json.Unmarshal(h, &m); err != nil {
		return Item{}, fmt.Errorf("decode item %d: %w: %v", id, errCorruptRecord, err)
	}
	p := b[1+w+int(n):]
	return Item{
		ID: id, Kind: m.Kind, Key: m.Key, Payload: json.RawMessage(bytes.Clone(p)),
		IdempotencyKey: m.Idem, Created: fromUnixNano(m.Created), Attempts: m.Attempts,
		NextAttempt: fromUnixNano(m.Next), LastError: m.LastError, Coalesce: m.Coalesce,
		DeadReason: m.DeadReason, DeadAt: fromUnixNano(m.DeadAt), SkipLookup: m.NoLookup, Undecided: m.Undecided, turn: m.Turn,
	}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

func idKey(id uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return b[:]
}

func keyPrefix(key string) []byte {
	b := make([]byte, 2, 2+len(key)+8)
	binary.BigEndian.PutUint16(b, uint16(len(key)))
	return append(b, key...)
}

func byKeyKey(key string, id uint64) []byte {
	return binary.BigEndian.AppendUint64(keyPrefix(key), id)
}

// schedKey orders heads by due time, then id. Due times before the epoch
// (never produced) clamp to 0.
func schedKey(due int64, id uint64) []byte {
	if due < 0 {
		due = 0
	}
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(due))
	binary.BigEndian.PutUint64(b[8:], id)
	return b
}

func newIdempotencyKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

func getCounter(b *bolt.Bucket, name []byte) uint64 {
	v := b.Get(name)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putCounter(b *bolt.Bucket, name []byte, v uint64) error {
	return b.Put(name, idKey(v))
}

// txb gives access to the buckets of one transaction.
type txb struct {
	tx                              *bolt.Tx
	items, dead, bykey, sched, meta *bolt.Bucket
	// settled: items whose send result this transaction applied; they
	// are no longer in flight, whatever the commit's snapshot says.
	settled map[uint64]bool
}

func openTxb(tx *bolt.Tx) (*txb, error) {
	t := &txb{tx: tx, items: tx.Bucket(bucketItems), dead: tx.Bucket(bucketDead), bykey: tx.Bucket(bucketByKey),
		sched: tx.Bucket(bucketSched), meta: tx.Bucket(bucketMeta)}
	if t.items == nil || t.dead == nil || t.bykey == nil || t.sched == nil || t.meta == nil {
		return nil, fmt.Errorf("open buckets: %w: missing bucket", errCorruptRecord)
	}
	return t, nil
}

// ensureBuckets creates the layout in a fresh file.
func ensureBuckets(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	m := tx.Bucket(bucketMeta)
	if v := getCounter(m, metaVersion); v == 0 {
		return putCounter(m, metaVersion, layoutVersion)
	} else if v != layoutVersion {
		return fmt.Errorf("outbox layout version %d, want %d", v, layoutVersion)
	}
	return nil
}

func (t *txb) getItem(id uint64) (Item, bool, error) {
	v := t.items.Get(idKey(id))
	if v == nil {
		return Item{}, false, nil
	}
	it, err := decodeRecord(id, v)
	return it, err == nil, err
}

// keyIDs returns the ids of the pending items of key in FIFO order.
func (t *txb) keyIDs(key string) []uint64 {
	p := keyPrefix(key)
	var ids []uint64
	c := t.bykey.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p) && len(k) == len(p)+8; k, _ = c.Next() {
		ids = append(ids, binary.BigEndian.Uint64(k[len(p):]))
	}
	return ids
}

// keyOf finds the key of pending item id without decoding its record
// (which may be unreadable): from the sched entry when it is a head, else
// by a walk of the index.
func (t *txb) keyOf(id uint64) (string, error) {
	if v := t.items.Get(idKey(id)); v != nil {
		if it, err := decodeRecord(id, v); err == nil {
			return it.Key, nil
		}
	}
	c := t.bykey.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 10 {
			continue
		}
		n := int(binary.BigEndian.Uint16(k))
		if len(k) == 2+n+8 && binary.BigEndian.Uint64(k[2+n:]) == id {
			return string(k[2 : 2+n]), nil
		}
	}
	return "", fmt.Errorf("%w: item %d is not in the key index", errCorruptRecord, id)
}

// headOf returns the id of the head of key named by the sched entry
// (due, turn): turn is the head's id, or, for an item that took the turn
// of those it replaced (coalescing), the id of the oldest of them.
func (t *txb) headOf(key string, turn uint64) (uint64, bool) {
	if t.bykey.Get(byKeyKey(key, turn)) != nil {
		return turn, true
	}
	p := keyPrefix(key)
	k, _ := t.bykey.Cursor().Seek(p)
	if k == nil || !bytes.HasPrefix(k, p) || len(k) != len(p)+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(p):]), true
}

// putPending stores it as pending (items + bykey); the caller reschedules.
func (t *txb) putPending(it *Item) error {
	if err := t.items.Put(idKey(it.ID), encodeRecord(it)); err != nil {
		return err
	}
	return t.bykey.Put(byKeyKey(it.Key, it.ID), nil)
}

// removePending deletes a pending item (items + bykey, and its sched
// entry if it was the head); the caller reschedules.
func (t *txb) removePending(id uint64, key string) error {
	if err := t.items.Delete(idKey(id)); err != nil {
		return err
	}
	bk := byKeyKey(key, id)
	if v := t.bykey.Get(bk); len(v) == 16 {
		if err := t.sched.Delete(bytes.Clone(v)); err != nil {
			return err
		}
	}
	return t.bykey.Delete(bk)
}

// hasPending reports whether key has pending items.
func (t *txb) hasPending(key string) bool {
	p := keyPrefix(key)
	k, _ := t.bykey.Cursor().Seek(p)
	return k != nil && bytes.HasPrefix(k, p) && len(k) == len(p)+8
}

// reschedule makes the sched bucket hold exactly one entry for key: its
// oldest pending item at that item's due time, or none. The head's bykey
// value names its sched entry.
func (t *txb) reschedule(key string) error { return t.rescheduleWith(key, nil) }

// rescheduleWith is reschedule when the caller holds the record it just
// stored, known: if that is the head, it is not read back and decoded.
func (t *txb) rescheduleWith(key string, known *Item) error {
	p := keyPrefix(key)
	c := t.bykey.Cursor()
	k, v := c.Seek(p)
	if k == nil || !bytes.HasPrefix(k, p) || len(k) != len(p)+8 {
		return nil
	}
	headKey, headVal := bytes.Clone(k), bytes.Clone(v)
	// An item put back in front of the head (Retry of a dead item) leaves
	// the old head's entry on the second index entry: clear it.
	if k2, v2 := c.Next(); k2 != nil && bytes.HasPrefix(k2, p) && len(k2) == len(p)+8 && len(v2) == 16 {
		k2, v2 = bytes.Clone(k2), bytes.Clone(v2)
		if err := t.sched.Delete(v2); err != nil {
			return err
		}
		if err := t.bykey.Put(k2, nil); err != nil {
			return err
		}
	}
	id := binary.BigEndian.Uint64(headKey[len(p):])
	var it Item
	if known != nil && known.ID == id {
		it = *known
	} else {
		var ok bool
		var err error
		if it, ok, err = t.getItem(id); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("reschedule %d: %w: index without item", id, errCorruptRecord)
		}
	}
	sk := schedKey(unixNano(it.NextAttempt), it.turnOf())
	if bytes.Equal(headVal, sk) {
		return nil
	}
	if len(headVal) == 16 {
		if err := t.sched.Delete(headVal); err != nil {
			return err
		}
	}
	if err := t.sched.Put(sk, []byte(key)); err != nil {
		return err
	}
	return t.bykey.Put(headKey, sk)
}

// usedBytes estimates the live content: the data size less free pages.
func usedBytes(db *bolt.DB, tx *bolt.Tx) int64 {
	st := db.Stats()
	used := tx.Size() - int64(st.FreePageN+st.PendingPageN)*int64(db.Info().PageSize)
	if used < 0 {
		used = 0
	}
	return used
}

func idFromKey(k []byte) uint64 { return binary.BigEndian.Uint64(k) }
