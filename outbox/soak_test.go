package outbox_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
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

	"github.com/tposagent/tposagent/internal/clock/clocktest"
	"github.com/tposagent/tposagent/internal/testrig"
	"github.com/tposagent/tposagent/outbox"
)

// soakFileBound is the documented size the file returns under once the
// cards have drained and the janitor has pruned (README, "Bounded
// bookkeeping"): the card table of cards with nothing pending is held to
// 10,000 links and 10,000 delivered marks and MaxSize/16 bytes of each
// (4 MiB at 64 MiB), and a drained file bigger than CompactMinSize
// (8 MiB) and four times its content is compacted: MaxSize/4.
const soakFileBound = 16 << 20

// The soak: 100,000 distinct kasa cards (each with its id and
// a long ERP integration_id, as the agent enqueues them) through a 64 MiB
// outbox with the default configuration otherwise, delivered as they
// come; then 24 hours of the queue's clock. The outbox never refuses a
// card, and at the end the file is back under soakFileBound and the heap
// (and, without the race detector, the RSS) under 50 MB: no memory or
// file grows with the number of cards ever seen. OUTBOX_SOAK_CARDS sets
// another number of cards (the default run uses 100,000 unless -short).
func TestSoakManyCardsThenADay(t *testing.T) {
	cards := 100_000
	if testing.Short() || raceEnabled {
		cards = 20_000
	}
	if s := os.Getenv("OUTBOX_SOAK_CARDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("OUTBOX_SOAK_CARDS=%q", s)
		}
		cards = n
	}
	// The peak RSS is this test's own: what earlier tests of the package
	// left is given back and the kernel's high-water mark reset (Linux).
	debug.FreeOSMemory()
	peakIsOurs := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	defer outbox.SetJanitorPollForTest(10 * time.Millisecond)()
	clock := clocktest.New(time.Time{})
	opts := outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db"), MaxSize: 64 << 20, Clock: clock}
	q, err := outbox.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// It keeps only a count (the scripted test sender keeps every call,
	// which would grow the heap).
	var sent atomic.Int64
	s := &countingSender{n: &sent}
	stop := testrig.Run(t, "run", 10*time.Second, func(ctx context.Context) error { return q.Run(ctx, s) })
	defer stop()

	started := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var maxFile atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(cards) || t.Failed() {
					return
				}
				intID := fmt.Sprintf("ERP-%012d-%s", i, strings.Repeat("x", 40))
				col, _ := json.Marshal(map[string]any{"id": i + 1, "integration_id": intID, "status": "1",
					"balance": "1260.50", "description": fmt.Sprintf("MERKEZ KASA Şişli %d", i)})
				_, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("kasa:id:", i+1),
					Aliases: []string{"kasa:int:" + intID}, Payload: col, Coalesce: true})
				if err != nil {
					t.Errorf("card %d: %v", i, err)
					return
				}
				if i%1000 == 0 {
					if fi, err := os.Stat(opts.Path); err == nil && fi.Size() > maxFile.Load() {
						maxFile.Store(fi.Size())
					}
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	enqueued := time.Since(started)
	testrig.WaitFor(t, "every card delivered", 5*time.Minute, func() bool { return sent.Load() >= int64(cards) })
	testrig.WaitFor(t, "drained", time.Minute, func() bool { return stats(t, q).Pending == 0 })
	peak := stats(t, q)
	// A day of the queue's clock, an hour at a time: the janitor runs.
	for range 24 {
		clock.Advance(time.Hour)
		now := clock.Now()
		testrig.WaitFor(t, "a janitor run", 30*time.Second, func() bool { return !stats(t, q).Bookkeeping.CountedAt.Before(now) })
	}
	var st outbox.Stats
	testrig.WaitFor(t, "the file back under its bound", time.Minute, func() bool {
		st = stats(t, q)
		return st.Bytes <= soakFileBound
	})
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, anon, file, peakRSS := procStatus()
	b := st.Bookkeeping
	t.Logf("%d cards in %v (%.0f/s), all delivered; file at most %.1f MiB while they went, %.1f MiB after the drain (%d compactions then), %.2f MiB after a day",
		cards, enqueued.Round(time.Millisecond), float64(cards)/enqueued.Seconds(), float64(maxFile.Load())/(1<<20),
		float64(peak.Bytes)/(1<<20), peak.Compactions, float64(st.Bytes)/(1<<20))
	t.Logf("RESULT soak cards=%d file_max_bytes=%d file_after_day_bytes=%d bound=%d heap_inuse_bytes=%d rss_bytes=%.0f peak_rss_bytes=%.0f",
		cards, maxFile.Load(), st.Bytes, soakFileBound, ms.HeapInuse, rss, peakRSS)
	t.Logf("after a day: aliases %d (%d KiB), delivered marks %d (%d KiB), keys %d, dead %d; heap in use %.1f MB; RSS %.1f MB (anon %.1f, file %.1f; peak %.1f)",
		b.Aliases.Count, b.Aliases.Bytes>>10, b.DeliveredMarks.Count, b.DeliveredMarks.Bytes>>10, b.IdempotencyKeys.Count, b.DeadLetters.Count,
		float64(ms.HeapInuse)/1e6, rss/1e6, anon/1e6, file/1e6, peakRSS/1e6)
	if b.Aliases.Count > outbox.DefaultCardLimit || b.DeliveredMarks.Count > outbox.DefaultCardLimit {
		t.Errorf("card table %d links, %d marks; bound %d each", b.Aliases.Count, b.DeliveredMarks.Count, outbox.DefaultCardLimit)
	}
	if ms.HeapInuse > 50e6 {
		t.Errorf("heap in use %.1f MB, bound 50 MB", float64(ms.HeapInuse)/1e6)
	}
	if !peakIsOurs {
		t.Logf("peak RSS not checked: /proc/self/clear_refs cannot reset the high-water mark here, so it counts earlier tests")
	} else if peakRSS > 50e6 && !raceEnabled {
		t.Errorf("peak RSS %.1f MB, bound 50 MB", peakRSS/1e6)
	}
}

// procStatus reads VmRSS, RssAnon, RssFile and VmHWM (the peak RSS) of
// this process (Linux; 0 elsewhere), in bytes.
func procStatus() (rss, anon, file, peak float64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0, 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fields[1], 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v * 1024
		case "RssAnon:":
			anon = v * 1024
		case "RssFile:":
			file = v * 1024
		case "VmHWM:":
			peak = v * 1024
		}
	}
	return rss, anon, file, peak
}
