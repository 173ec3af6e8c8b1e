package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"
)

// TestBodyFlood: hostile local connections send the complete
// headers of a POST /v1/kasa announcing a body, then one byte of it every
// 2 s, and open a new connection whenever the agent closes theirs, while
// a POS posts records on a new connection every 20 ms. Three shapes, each
// with TPOSAGENT_BODYFLOOD_CONNS connections (default 1,000) for
// TPOSAGENT_BODYFLOOD_SECONDS (default 6):
//
//   - no token, Content-Length 200000 (the run): 401 and closed at once;
//   - the token, Content-Length 200000: 413 (over MaxBody) and closed at once;
//   - the token, Content-Length 60000 (within MaxBody): the connection is
//     inside its body until the minimum rate closes it (16 KiB within 2 s),
//     and a stalled one gives its place to a new request before that.
//
// Not one POS request may fail, and the agent's resident memory stays
// under 100 MB. On the code before, 18 of 18 POS requests got 503 with 300
// such connections (the body was drained for up to 30 s after a 401, and
// a connection inside a request was never closed to make room).
func TestBodyFlood(t *testing.T) {
	conns := envInt(t, "TPOSAGENT_BODYFLOOD_CONNS", 1000)
	seconds := envInt(t, "TPOSAGENT_BODYFLOOD_SECONDS", 6)
	const (
		every       = 2 * time.Second // a byte of the body
		maxRSS      = 100 << 20
		posEvery    = 20 * time.Millisecond
		dialTimeout = 5 * time.Second
	)
	raiseFileLimit(t, conns+200)

	f := newFixture(t, "", nil)
	f.mustStart()
	proc, err := process.NewProcess(int32(f.PID()))
	if err != nil {
		t.Fatal(err)
	}
	rss := func() uint64 {
		m, err := proc.MemoryInfo()
		if err != nil {
			return 0
		}
		return m.RSS
	}
	base := f.api().BaseURL
	addr := strings.TrimPrefix(base, "http://")
	idleRSS := rss()
	var results []string
	for _, shape := range []struct {
		name          string
		token         bool
		contentLength int
	}{
		{"no token, Content-Length 200000", false, 200000},
		{"token, Content-Length 200000", true, 200000},
		{"token, Content-Length 60000", true, 60000},
	} {
		before, err := f.status()
		if err != nil || before.API == nil {
			t.Fatalf("status before the flood: %v", err)
		}
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var opened, bytesSent atomic.Int64
		head := "POST /v1/kasa HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n"
		if shape.token {
			head += "Authorization: Bearer " + apiToken + "\r\n"
		}
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", shape.contentLength)
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Start spread over the first period, as a flood that has
				// been running a while is.
				first := time.NewTimer(time.Duration(i) * every / time.Duration(conns))
				select {
				case <-ctx.Done():
					first.Stop()
					return
				case <-first.C:
				}
				tick := time.NewTicker(every)
				defer tick.Stop()
				for ctx.Err() == nil {
					d := net.Dialer{Timeout: dialTimeout}
					c, err := d.DialContext(ctx, "tcp", addr)
					if err != nil {
						select {
						case <-ctx.Done():
						case <-tick.C:
						}
						continue
					}
					opened.Add(1)
					closed := make(chan struct{})
					go func() { // what the agent answers, until it closes
						io.Copy(io.Discard, c)
						close(closed)
					}()
					_, err = io.WriteString(c, head+"{")
					for err == nil && ctx.Err() == nil {
						select {
						case <-ctx.Done():
						case <-closed:
							err = io.EOF
						case <-tick.C:
							if _, err = c.Write([]byte(" ")); err == nil {
								bytesSent.Add(1)
							}
						}
					}
					c.Close()
					<-closed
					if ctx.Err() == nil { // reconnect on the next tick
						select {
						case <-ctx.Done():
						case <-tick.C:
						}
					}
				}
			}()
		}

		// The POS: a new connection for each record.
		var lat latencies
		var peak atomic.Uint64
		wg.Add(2)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			// Let the flood build up first: every hostile connection has
			// been opened once.
			for opened.Load() < int64(conns) && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			for n := 0; ctx.Err() == nil; n++ {
				body := fmt.Sprintf(`{"integration_id":"bf-%d-%d","description":"KASA %d"}`, len(results), n, n)
				req, _ := http.NewRequest("POST", base+"/v1/kasa", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+apiToken)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := hc.Do(req)
				d := time.Since(t0)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if ctx.Err() == nil || err == nil {
					lat.ds = append(lat.ds, d)
					if err != nil {
						lat.fails = append(lat.fails, err.Error())
					}
				}
				select {
				case <-ctx.Done():
				case <-time.After(posEvery):
				}
			}
		}()
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if r := rss(); r > peak.Load() {
					peak.Store(r)
				}
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		// every+: the flood is whole before the measured seconds start.
		time.Sleep(every + time.Duration(seconds)*time.Second)
		stop()
		wg.Wait()

		st, err := f.status()
		if err != nil {
			t.Fatalf("status after the flood: %v", err)
		}
		var evicted, refused, slow uint64
		if st.API != nil {
			evicted, refused, slow = st.API.Evicted-before.API.Evicted, st.API.Refused-before.API.Refused, st.API.SlowBodies-before.API.SlowBodies
		}
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		t.Logf("%s: %d hostile connections at a time, %d opened, %d body bytes sent; POS %s, %d failed %.300q; the agent pushed out %d, refused %d, slow bodies closed %d; RSS peak %.1f MB",
			shape.name, conns, opened.Load(), bytesSent.Load(), &lat, len(lat.fails), lat.fails, evicted, refused, slow, float64(peak.Load())/1e6)
		if len(lat.ds) < 10 {
			t.Errorf("%s: the POS made only %d requests", shape.name, len(lat.ds))
		}
		if len(lat.fails) > 0 {
			t.Errorf("%s: %d of %d POS requests failed, first: %s", shape.name, len(lat.fails), len(lat.ds), lat.fails[0])
		}
		if p := peak.Load(); p == 0 || p > maxRSS {
			t.Errorf("%s: agent RSS peak %.1f MB, want 0 < peak < 100 MB", shape.name, float64(p)/1e6)
		}
		results = append(results, fmt.Sprintf("%q: conns=%d opened=%d evicted=%d refused=%d slow_closed=%d pos=%d pos_failed=%d pos_ms_p50/p99/max=%.1f/%.1f/%.1f peak_rss_mb=%.1f",
			shape.name, conns, opened.Load(), evicted, refused, slow, len(lat.ds), len(lat.fails), ms(lat.quantile(0.5)), ms(lat.quantile(0.99)), ms(lat.quantile(1)), float64(peak.Load())/1e6))
	}
	t.Logf("RESULT body-flood idle_rss_mb=%.1f %s", float64(idleRSS)/1e6, strings.Join(results, "; "))
}
