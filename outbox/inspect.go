package outbox

import (
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrInUse is returned by Inspect while a running queue holds the file.
var ErrInUse = errors.New("outbox file is in use")

// Inspect reads the counts and up to deadLimit dead letters of the outbox
// file at path without changing it (a read-only bbolt open: nothing is
// created, repaired or moved aside). It is for support tools while the
// agent is stopped; while a queue holds the file it fails at once with
// ErrInUse. The dead letters' payloads are left out.
func Inspect(path string, deadLimit int) (Stats, []Item, error) {
	var st Stats
	fi, err := os.Stat(path)
	if err != nil {
		return st, nil, fmt.Errorf("inspect outbox: %w", err)
	}
	st.Bytes = fi.Size()
	// A damaged file must give an error, not a fault through bbolt's
	// mapping (a truncated file), in the support tool either.
	if fi.Size() > 0 {
		if _, err := precheckMeta(path); err != nil {
			return st, nil, fmt.Errorf("inspect outbox: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 300 * time.Millisecond})
	if errors.Is(err, berrors.ErrTimeout) {
		return st, nil, fmt.Errorf("inspect outbox %s: %w (an agent is running: ask it instead)", path, ErrInUse)
	}
	if err != nil {
		return st, nil, fmt.Errorf("inspect outbox %s: %w", path, err)
	}
	defer db.Close()
	var dead []Item
	err = db.View(func(tx *bolt.Tx) error {
		t, err := openTxb(tx)
		if err != nil {
			return err
		}
		m := t.meta
		st.Pending, st.Dead = int(getCounter(m, metaPending)), int(getCounter(m, metaDead))
		st.Enqueued, st.Delivered = getCounter(m, metaEnqueued), getCounter(m, metaDelivered)
		st.Coalesced, st.DeadLettered = getCounter(m, metaCoalesced), getCounter(m, metaDeadLettered)
		if k, v := t.items.Cursor().First(); len(k) == 8 {
			if it, err := decodeRecord(0, v); err == nil && !it.Created.IsZero() {
				st.OldestPendingAge = max(time.Since(it.Created), 0)
			}
		}
		c := t.dead.Cursor()
		for k, v := c.First(); k != nil && len(dead) < deadLimit; k, v = c.Next() {
			if len(k) != 8 {
				continue
			}
			it, err := decodeRecord(idFromKey(k), v)
			if err != nil {
				it = Item{ID: idFromKey(k), LastError: err.Error()}
			}
			it.Payload = nil
			dead = append(dead, it)
		}
		return nil
	})
	if err != nil {
		return st, nil, fmt.Errorf("inspect outbox %s: %w", path, err)
	}
	return st, dead, nil
}
