package localapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/outbox"
)

// largestRecord is a kasa column of the largest valid size.
func largestRecord(id int) json.RawMessage {
	head := fmt.Sprintf(`{"id":%d,"integration_id":"%d","description":"`, id, id)
	fill := strings.Repeat("ş", (records.MaxRecordBytes-len(head)-2)/2)
	return json.RawMessage(head + fill + `"}`)
}

func listPage(t *testing.T, url string) (items []localapi.ItemView, next string, raw map[string]json.RawMessage) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if err := json.Unmarshal(raw["items"], &items); err != nil {
		t.Fatal(err)
	}
	if n, ok := raw["next_cursor"]; ok {
		if err := json.Unmarshal(n, &next); err != nil || next == "" {
			t.Fatalf("next_cursor %s", n)
		}
	}
	return items, next, raw
}

// GET /v1/outbox answers at most 500 items, and pages through the rest
// with next_cursor; every item comes once, in order.
func TestListIsCappedAndPagesWithACursor(t *testing.T) {
	srv, q := newServer(t, 0)
	var ids []uint64
	for i := range 620 {
		it, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindSpecialCode, Key: fmt.Sprint("special:", i),
			Payload: json.RawMessage(fmt.Sprintf(`{"integration_id":"%d"}`, i))})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, it.ID)
	}
	items, next, raw := listPage(t, srv.URL+"/v1/outbox?state=pending&limit=10000")
	if len(items) != localapi.MaxListLimit || next == "" || string(raw["limit"]) != "500" {
		t.Fatalf("limit=10000 answered %d items, next %q, limit %s; want the cap, 500, and a cursor", len(items), next, raw["limit"])
	}
	got := items
	for pages := 1; next != ""; pages++ {
		if pages > 10 {
			t.Fatal("the cursor never ends")
		}
		items, next, _ = listPage(t, srv.URL+"/v1/outbox?limit=70&cursor="+next)
		got = append(got, items...)
	}
	if len(got) != len(ids) {
		t.Fatalf("paged %d items, want %d", len(got), len(ids))
	}
	for i, it := range got {
		if it.ID != ids[i] || !strings.Contains(string(it.Payload), fmt.Sprintf(`"%d"`, i)) {
			t.Fatalf("item %d: %+v, want id %d", i, it, ids[i])
		}
	}
	// The client pages through the same way.
	c := &localapi.Client{BaseURL: srv.URL, Token: token}
	all, err := c.List(context.Background(), "pending", 1000)
	if err != nil || len(all) != len(ids) || all[len(all)-1].ID != ids[len(ids)-1] {
		t.Fatalf("client List: %d items, %v", len(all), err)
	}
	for _, bad := range []string{"limit=0", "limit=-3", "limit=x", "cursor=abc", "cursor=-1"} {
		if code, eb, _ := do(t, srv, "GET", "/v1/outbox?"+bad, ""); code != 400 || eb.Field == "" {
			t.Errorf("%s: %d %+v, want 400 naming the field", bad, code, eb)
		}
	}
}

// A list of records of the largest valid size is answered in bounded
// memory, four at once: the answer is written as the items are read.
// Before, GET /v1/outbox?limit=10000 built the whole answer in memory
// (600 records of 20 KB took 107 MB).
func TestListOfLargestRecordsStaysInBoundedMemory(t *testing.T) {
	// Not newServer: its contract check records whole answers.
	q, err := outbox.Open(outbox.Options{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	srv := httptest.NewServer(localapi.NewHandler(localapi.Config{Token: token, Queue: agent.LocalQueue(q)}))
	t.Cleanup(srv.Close)
	const n = 600
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := q.Enqueue(context.Background(), outbox.Entry{Kind: outbox.KindKasa, Key: fmt.Sprint("kasa:id:", i), Payload: largestRecord(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// Little garbage between collections, so that the heap in use is
	// close to what is live.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var total atomic.Int64
	var lists sync.WaitGroup
	for range 4 {
		lists.Add(1)
		go func() {
			defer lists.Done()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/outbox?state=pending&limit=10000", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			m, err := io.Copy(io.Discard, resp.Body)
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("list: %d, %v", resp.StatusCode, err)
			}
			total.Add(m)
		}()
	}
	lists.Wait()
	close(stop)
	<-sampled
	grew := int64(peak.Load()) - int64(base)
	const bound = 24 << 20
	t.Logf("4 lists of %d records of %d bytes: %d MB answered, heap grew by at most %.1f MB (bound %d MB)",
		localapi.MaxListLimit, records.MaxRecordBytes, total.Load()>>20, float64(grew)/(1<<20), bound>>20)
	t.Logf("RESULT list_memory lists=4 items=%d record_bytes=%d answered_bytes=%d heap_growth_bytes=%d bound=%d",
		localapi.MaxListLimit, records.MaxRecordBytes, total.Load(), grew, bound)
	if total.Load() < 4*localapi.MaxListLimit*records.MaxRecordBytes {
		t.Fatalf("answered %d bytes, want 4 × 500 records of %d bytes", total.Load(), records.MaxRecordBytes)
	}
	if grew > bound {
		t.Fatalf("the heap grew by %d MB while listing, bound %d MB", grew>>20, bound>>20)
	}
}
