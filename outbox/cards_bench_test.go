package outbox_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/outbox"
)

// enqueueCards runs n kasa enqueues from 64 producers over 500 cards;
// full: each carries the card's other name and its own idempotency key.
func enqueueCards(b *testing.B, q *outbox.Queue, n int, full bool) float64 {
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				card := i % 500
				e := outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("kasa:id:", card), Payload: benchPayload, Coalesce: true}
				if full {
					e.Aliases = []string{fmt.Sprint("kasa:int:ERP-", card)}
					e.IdempotencyKey = fmt.Sprint("pos-", i)
				}
				if _, err := q.Enqueue(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkEnqueueAliasesAndKeys: what one card one key and the
// producer's idempotency keys cost a durable enqueue, against the same
// enqueue without them, measured in the same run. The two alternate for
// three rounds on fresh files and the best rate of each counts, so that a
// busy machine skews both alike.
func BenchmarkEnqueueAliasesAndKeys(b *testing.B) {
	n := max(b.N, 3000)
	var best [2]float64
	for round := range 3 {
		for i, full := range []bool{false, true} {
			q, err := outbox.Open(outbox.Options{Path: filepath.Join(b.TempDir(), fmt.Sprint(round, full, ".db")), MaxSize: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			best[i] = max(best[i], enqueueCards(b, q, n, full))
			q.Close()
		}
	}
	b.ReportMetric(best[1], "items/s")
	b.ReportMetric(best[0], "plain_items/s")
	b.ReportMetric(best[1]/best[0], "x_plain")
}
