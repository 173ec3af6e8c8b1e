package outbox

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// pruneCards is a stand-in until the card bookkeeping's own pruning
// (cards.go, branch obcards) is merged: it forgets nothing. Delete this
// file at that merge.
func (q *Queue) pruneCards(tx *bolt.Tx, now time.Time, max int) (removed int, err error) {
	return 0, nil
}
