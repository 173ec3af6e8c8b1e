package outbox

import "fmt"

// LastID returns the highest id the queue has given out so far (0 for a
// new file). Items enqueued later have larger ids, so a sender that reads
// it before Run can tell the items an earlier process accepted (and may
// have been sending when it stopped) from the ones accepted since.
func (q *Queue) LastID() (uint64, error) {
	var seq uint64
	err := q.view(func(t *txb) error {
		seq = t.items.Sequence()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox last id: %w", err)
	}
	return seq, nil
}
