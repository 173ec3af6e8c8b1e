package outbox_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
	"github.com/tposagent/tposagent/outbox"
)

// Benchmarks: go test -run '^$' -bench . -benchtime 1x ./outbox
// (BenchmarkEnqueue wants more than one iteration: drop -benchtime there.)

const producers = 64

var benchPayload = json.RawMessage(`{"id":"1","code":"K001","name":"Merkez Kasa Çağrı","price1":"1260.50","balance":"0.00","currency":"TRY"}`)

// enqueueRate runs n enqueues from 64 producers; cards > 0 spreads them
// over that many keys, else every item has its own key (special codes).
func enqueueRate(b *testing.B, q *outbox.Queue, n, cards int) float64 {
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				key := fmt.Sprint("sc:", i)
				if cards > 0 {
					key = fmt.Sprint("kasa:", i%int64(cards))
				}
				if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: key, Payload: benchPayload}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

var naiveRates sync.Map // cards -> items/s

// BenchmarkEnqueue: durable enqueue from 64 concurrent producers (group
// commit) against the naive baseline: the same enqueue on the same layout
// with one db.Update (one fsync) per item, measured in the same run.
func BenchmarkEnqueue(b *testing.B) {
	for _, cards := range []int{0, 500} {
		name := "keys=unique"
		if cards > 0 {
			name = fmt.Sprintf("keys=%d", cards)
		}
		b.Run(name, func(b *testing.B) {
			naive, ok := naiveRates.Load(cards)
			if !ok {
				q, err := outbox.OpenNaive(outbox.Options{Path: filepath.Join(b.TempDir(), "naive.db")})
				if err != nil {
					b.Fatal(err)
				}
				naive = enqueueRate(b, q, 3000, cards)
				q.Close()
				naiveRates.Store(cards, naive)
			}
			q, err := outbox.Open(outbox.Options{Path: filepath.Join(b.TempDir(), "outbox.db"), MaxSize: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer q.Close()
			b.ResetTimer()
			rate := enqueueRate(b, q, b.N, cards)
			b.StopTimer()
			b.ReportMetric(rate, "items/s")
			b.ReportMetric(naive.(float64), "naive_items/s")
			b.ReportMetric(rate/naive.(float64), "x_naive")
		})
	}
}

// httpSender is the tiny Sender of the drain benchmark and crash test:
// POST the payload, 200 = delivered, 5xx = retry, other = reject.
type httpSender struct {
	url    string
	client *http.Client
}

func newHTTPSender(url string, keepAlive bool) *httpSender {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableKeepAlives: !keepAlive}
	return &httpSender{url: url, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (s *httpSender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/send?key="+it.Key, bytes.NewReader(it.Payload))
	if err != nil {
		return outbox.Result{Verdict: outbox.Reject, Reason: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", it.IdempotencyKey)
	resp, err := s.client.Do(req)
	if err != nil {
		return outbox.Result{Verdict: outbox.Retry, Reason: "post: network error"}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		return outbox.Result{Verdict: outbox.Delivered}
	case resp.StatusCode >= 500 || resp.StatusCode == 408 || resp.StatusCode == 429:
		return outbox.Result{Verdict: outbox.Retry, Reason: resp.Status}
	}
	return outbox.Result{Verdict: outbox.Reject, Reason: resp.Status}
}

func (s *httpSender) Probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.url+"/", nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp.Body.Close()
	return nil
}

func fill(b *testing.B, q *outbox.Queue, n, cards int, coalesce bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				e := outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("kasa:", i%int64(cards)), Payload: benchPayload, Coalesce: coalesce}
				if _, err := q.Enqueue(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func drain(b *testing.B, q *outbox.Queue, s outbox.Sender) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- q.Run(ctx, s) }()
	for {
		st, err := q.Stats()
		if err != nil {
			b.Fatal(err)
		}
		if st.Pending == 0 && st.InFlight == 0 {
			break
		}
		if st.Dead > 0 {
			b.Fatalf("dead letters: %+v", st)
		}
		time.Sleep(2 * time.Millisecond)
	}
	el := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return el
}

// naiveDrainRate: one item at a time, a new connection per request, one
// Update per delete.
func naiveDrainRate(b *testing.B, url string, n int) float64 {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "naive.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte("items"))
		for i := range n {
			if err == nil {
				err = bk.Put(binary.BigEndian.AppendUint64(nil, uint64(i)), benchPayload)
			}
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	s := newHTTPSender(url, false)
	start := time.Now()
	for {
		var k, v []byte
		_ = db.View(func(tx *bolt.Tx) error {
			k, v = tx.Bucket([]byte("items")).Cursor().First()
			k, v = bytes.Clone(k), bytes.Clone(v)
			return nil
		})
		if k == nil {
			break
		}
		if r := s.Send(context.Background(), outbox.Item{Key: "k", Payload: v}); r.Verdict != outbox.Delivered {
			b.Fatalf("naive send: %+v", r)
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("items")).Delete(k) }); err != nil {
			b.Fatal(err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkDrain: 100,000 kasa updates over 500 cards, coalesced at
// enqueue, then 100,000 non-coalescable items over 500 keys, each drained
// against a loopback server with keep-alive; beside the naive drain.
func BenchmarkDrain(b *testing.B) {
	const n, cards = 100_000, 500
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			requests.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
		}
		_, _ = w.Write([]byte(`{"status":true}`))
	}))
	defer srv.Close()
	naive := naiveDrainRate(b, srv.URL, 2000)
	for range b.N {
		requests.Store(0)
		opts := outbox.Options{Path: filepath.Join(b.TempDir(), "outbox.db"), MaxSize: 1 << 30}
		q, err := outbox.Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		fill(b, q, n, cards, true)
		drain(b, q, newHTTPSender(srv.URL, true))
		coalescedRequests := requests.Load()
		st, _ := q.Stats()
		if coalescedRequests > cards || st.Delivered != uint64(coalescedRequests) {
			b.Errorf("coalesced drain: %d requests (want <= %d), stats %+v", coalescedRequests, cards, st)
		}
		q.Close()

		requests.Store(0)
		opts.Path = filepath.Join(b.TempDir(), "outbox2.db")
		q, err = outbox.Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		fill(b, q, n, cards, false)
		el := drain(b, q, newHTTPSender(srv.URL, true))
		if got := requests.Load(); got != n {
			b.Errorf("plain drain: %d requests, want %d", got, n)
		}
		q.Close()
		rate := float64(n) / el.Seconds()
		b.ReportMetric(float64(coalescedRequests), "coalesced_requests")
		b.ReportMetric(rate, "drain_items/s")
		b.ReportMetric(naive, "naive_drain_items/s")
		b.ReportMetric(rate/naive, "x_naive")
	}
}

func rssBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	b.Skip("no VmRSS")
	return 0
}

func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

var million struct {
	sync.Once
	dir, path string
	err       error
}

// BenchmarkOpenMillion: a file with 1,000,000 pending items over 10,000
// cards: open time and resident memory growth (open, stats, list, send
// 1,000 items), beside the naive way (load items into memory; measured on
// 100,000 and scaled to the million).
func BenchmarkOpenMillion(b *testing.B) {
	const n, keys = 1_000_000, 10_000
	million.Do(func() {
		million.dir, million.err = os.MkdirTemp("", "outbox-million-")
		if million.err == nil {
			million.path = filepath.Join(million.dir, "outbox.db")
			million.err = outbox.BulkLoad(million.path, n, keys, benchPayload)
		}
	})
	if million.err != nil {
		b.Fatal(million.err)
	}
	b.Cleanup(func() {}) // the file is removed by TestMain
	for range b.N {
		settle()
		rss0 := rssBytes(b)
		start := time.Now()
		q, err := outbox.Open(outbox.Options{Path: million.path, MaxSize: 1 << 30, ReconnectJitter: 0})
		if err != nil {
			b.Fatal(err)
		}
		openTime := time.Since(start)
		st, err := q.Stats()
		if err != nil || st.Pending < n-2000 {
			b.Fatalf("stats %+v %v", st, err)
		}
		if items, err := q.List(outbox.Pending, 100); err != nil || len(items) != 100 {
			b.Fatalf("list: %d %v", len(items), err)
		}
		var sent atomic.Int64
		s := &countingSender{n: &sent}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- q.Run(ctx, s) }()
		for sent.Load() < 1000 {
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		settle()
		rss1 := rssBytes(b)
		// Naive: what loading the items wholesale costs, on 100,000.
		naive, err := q.List(outbox.Pending, 100_000)
		if err != nil {
			b.Fatal(err)
		}
		rss2 := rssBytes(b)
		runtime.KeepAlive(naive)
		naive = nil
		q.Close()
		growth := float64(rss1-rss0) / (1 << 20)
		naiveGrowth := float64(rss2-rss1) / (1 << 20) * 10
		b.ReportMetric(float64(openTime.Milliseconds()), "open_ms")
		b.ReportMetric(growth, "rss_growth_MB")
		b.ReportMetric(naiveGrowth, "naive_rss_MB")
		if growth > 50 || openTime > time.Second {
			b.Errorf("open %v, rss growth %.1f MB: want < 1s and < 50 MB", openTime, growth)
		}
	}
}

type countingSender struct{ n *atomic.Int64 }

func (s *countingSender) Send(ctx context.Context, it outbox.Item) outbox.Result {
	s.n.Add(1)
	return outbox.Result{Verdict: outbox.Delivered}
}
func (s *countingSender) Probe(ctx context.Context) error { return nil }

func TestMain(m *testing.M) {
	lossyfs.MaybeServe() // the failing disk of storefault_linux_test.go, served by a child
	if os.Getenv(crashHelperEnv) != "" {
		os.Exit(crashHelperMain())
	}
	code := m.Run()
	if million.dir != "" {
		os.RemoveAll(million.dir)
	}
	os.Exit(code)
}
