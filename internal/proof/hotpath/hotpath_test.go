package hotpath

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/records"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig/legacyrecords"
	"github.com/tposagent/tposagent/outbox"
)

const token = "hotpath-token-0123456789abcdef"

// childEnv names the server variant a re-executed test binary runs.
const childEnv = "TPOSAGENT_HOTPATH_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		if path := os.Getenv(profileEnv); path != "" {
			f, err := os.Create(path + "." + v)
			if err == nil {
				pprof.StartCPUProfile(f)
			}
		}
		err := serveChild(v, os.Args[len(os.Args)-1])
		pprof.StopCPUProfile()
		if err != nil {
			fmt.Fprintln(os.Stderr, "hotpath child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// profileEnv, when set, makes each child write a CPU profile to
// "<value>.<variant>".
const profileEnv = "TPOSAGENT_HOTPATH_CPUPROFILE"

// Variants of the server under load.
const (
	variantNaive     = "naive"     // bare net/http handler: unmarshal, answer; nothing stored
	variantBefore    = "before"    // the first local API: token-by-token validation, indented JSON
	variantPerUpdate = "perupdate" // today's handler over a queue that commits one db.Update per request
	variantAgent     = "agent"     // the real agent (agent.New + Run)
)

// serveChild runs one variant on 127.0.0.1:0, prints its address on
// stdout and serves until stdin closes.
func serveChild(variant, dir string) error {
	var h http.Handler
	var closeQ func()
	switch variant {
	case variantNaive:
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var m map[string]any
			body, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(body, &m); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusAccepted)
			w.Write([]byte(`{"id":1}`))
		})
	case variantBefore:
		q, err := outbox.Open(outbox.Options{Path: filepath.Join(dir, "outbox.db")})
		if err != nil {
			return err
		}
		closeQ = func() { q.Close() }
		h = beforeHandler(agent.LocalQueue(q))
	case variantPerUpdate:
		db, err := bolt.Open(filepath.Join(dir, "outbox.db"), 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			return err
		}
		closeQ = func() { db.Close() }
		h = localapi.NewHandler(localapi.Config{
			Token: token, Queue: perUpdateQueue{db},
			Status:  func() localapi.Status { return localapi.Status{} },
			License: func() tposl.License { return tposl.Unknown("benchmark") },
		})
	case variantAgent:
		cfg := config.Default()
		cfg.DataDir = dir
		cfg.API.Listen = "127.0.0.1:0"
		cfg.API.Token = token
		cfg.Device.Port = "none"
		cfg.Device.FiscalSerial = "JI20012345"
		a, err := agent.New(&cfg, agent.Options{})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		fmt.Println(a.Addr().String())
		io.Copy(io.Discard, os.Stdin)
		cancel()
		return <-done
	default:
		return fmt.Errorf("unknown variant %q", variant)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	ln, err := listen()
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	go srv.Serve(ln)
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
	if closeQ != nil {
		closeQ()
	}
	return nil
}

// perUpdateQueue commits every record in its own db.Update (one fsync
// each): the naive durable queue.
type perUpdateQueue struct{ db *bolt.DB }

func (p perUpdateQueue) Enqueue(ctx context.Context, r localapi.Record) (localapi.Accepted, error) {
	var id uint64
	err := p.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("items"))
		if err != nil {
			return err
		}
		id, _ = b.NextSequence()
		v := append([]byte(string(r.Kind)+"\x00"+r.Key+"\x00"), r.Column...)
		return b.Put(binary.BigEndian.AppendUint64(nil, id), v)
	})
	return localapi.Accepted{ID: id, Key: r.Key}, err
}

func (perUpdateQueue) Page(_ localapi.State, after uint64, _ int, _ func(localapi.ItemView) error) (uint64, bool, error) {
	return after, false, nil
}
func (perUpdateQueue) Retry(uint64, bool) error { return localapi.ErrNotFound }
func (perUpdateQueue) Drop(uint64) error        { return localapi.ErrNotFound }

// beforeHandler is the first enqueue path of the local API, kept for the
// comparison: legacy validation, then the queue, then indented JSON.
func beforeHandler(q localapi.Queue) http.Handler {
	writeJSON := func(w http.ResponseWriter, code int, v any) {
		b, _ := json.MarshalIndent(v, "", "  ")
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		w.Write(append(b, '\n'))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			writeJSON(w, 401, localapi.ErrorBody{Error: "token"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, localapi.MaxBody))
		if err != nil || !utf8.Valid(body) {
			writeJSON(w, 400, localapi.ErrorBody{Error: "body"})
			return
		}
		col, key, err := legacyrecords.NormalizeKasa(body)
		if err != nil {
			var fe *records.FieldError
			errors.As(err, &fe)
			writeJSON(w, 400, localapi.ErrorBody{Error: err.Error()})
			return
		}
		acc, err := q.Enqueue(r.Context(), localapi.Record{Kind: localapi.KindKasa, Key: key, Column: col})
		if err != nil {
			writeJSON(w, 503, localapi.ErrorBody{Error: err.Error()})
			return
		}
		writeJSON(w, 202, acc)
	})
}

// child is a running server variant.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startChild(b *testing.B, variant string) *child {
	b.Helper()
	dir := b.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$", dir)
	cmd.Env = append(os.Environ(), childEnv+"="+variant, "GOMAXPROCS="+strconv.Itoa(runtime.GOMAXPROCS(0)))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stdin.Close()
		cmd.Wait()
		b.Fatalf("%s: no address: %v", variant, err)
	}
	c := &child{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(line)}
	b.Cleanup(c.stop)
	return c
}

func (c *child) stop() {
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
		c.cmd.Wait()
	}
}

// cpu is the child's user+system CPU time so far, from /proc.
func (c *child) cpu(b *testing.B) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the ")" that closes the command name: state is field 3;
	// utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100).
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// kasaBody is the spec example with a distinct card id per record.
func kasaBody(i int64) []byte {
	return fmt.Appendf(nil, `{"id":%d,"integration_id":"ERP-%d","status":"1","key1":"21","key2":"1","note":"--",`+
		`"price":"100","price1":"120","price2":"0","balance":"1.260,50","balance1":"1566","balance2":"",`+
		`"description":"MERKEZ KASA Şişli Çağrı","space2":"","space3":"","space4":"","space5":"",`+
		`"kasafisi_created_in":"2025-05-23 00:00:00","kasafisi_updated_in":"2025-05-23 00:00:00"}`, i, i)
}

// result of one load run.
type result struct {
	records  int
	elapsed  time.Duration
	cpu      time.Duration
	perRec   time.Duration // child CPU per accepted record
	perSec   float64       // accepted records per second
	accepted int64
}

// load posts n kasa records from clients concurrent clients with
// keep-alive, each with its own Idempotency-Key, and measures the child's
// CPU over the load.
func load(b *testing.B, c *child, n, clients int) result {
	b.Helper()
	tr := &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := "http://" + c.addr + "/v1/kasa"
	post := func(i int64) error {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(kasaBody(i)))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("pos-%d", i)) // as a POS that may resend
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("record %d: HTTP %d", i, resp.StatusCode)
		}
		return nil
	}
	// Warm up the connections and the child.
	for i := range int64(clients) {
		if err := post(1_000_000_000 + i); err != nil {
			b.Fatal(err)
		}
	}
	var next, ok atomic.Int64
	var firstErr atomic.Value
	cpu0, t0 := c.cpu(b), time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := post(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(t0), c.cpu(b)-cpu0
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	r := result{records: n, elapsed: elapsed, cpu: cpu, accepted: ok.Load()}
	r.perRec = cpu / time.Duration(max(r.accepted, 1))
	r.perSec = float64(r.accepted) / elapsed.Seconds()
	return r
}

// fsyncRate is how many write+fsync pairs per second the filesystem of dir
// does (what a commit costs at least), over about a second.
func fsyncRate(b *testing.B, dir string) float64 {
	b.Helper()
	f, err := os.Create(filepath.Join(dir, "fsync.probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	n, start := 0, time.Now()
	for time.Since(start) < time.Second {
		if _, err := f.WriteAt(page, int64(n%16)*4096); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}

// recordsEnv sets the load size (default 20,000 records per variant).
const recordsEnv = "TPOSAGENT_HOTPATH_RECORDS"

// BenchmarkHotPath loads each variant, in its own process, with the same
// 64 concurrent clients and reports the agent's CPU per accepted record
// (from the process's user+system time) and its accepted records per
// second, beside the fsync rate of the data dir's filesystem measured in
// the same run.
//
//	go test -run '^$' -bench HotPath -benchtime 1x ./internal/proof/hotpath
func BenchmarkHotPath(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("hot-path benchmark reads the child's CPU time from /proc (Linux only)")
	}
	n := 20_000
	if s := os.Getenv(recordsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("%s=%q: want a positive count", recordsEnv, s)
		}
		n = v
	}
	clients := 64
	if s := os.Getenv("TPOSAGENT_HOTPATH_CLIENTS"); s != "" {
		clients, _ = strconv.Atoi(s)
	}
	for range b.N {
		// The fsync rate before and after the loads; the higher one is
		// compared (the machine's load moves it).
		fs := fsyncRate(b, b.TempDir())
		res := map[string]result{}
		for _, v := range []string{variantNaive, variantBefore, variantPerUpdate, variantAgent} {
			c := startChild(b, v)
			res[v] = load(b, c, n, clients)
			c.stop()
			r := res[v]
			b.Logf("%-9s %6d records in %6.2fs: %7.0f records/s, CPU %6.2fs = %5.1f µs/record",
				v, r.accepted, r.elapsed.Seconds(), r.perSec, r.cpu.Seconds(), float64(r.perRec.Nanoseconds())/1e3)
		}
		fs = max(fs, fsyncRate(b, b.TempDir()))
		a, naive, before, per := res[variantAgent], res[variantNaive], res[variantBefore], res[variantPerUpdate]
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
		b.ReportMetric(us(a.perRec), "agent-cpu-µs/record")
		b.ReportMetric(us(naive.perRec), "naive-cpu-µs/record")
		b.ReportMetric(us(before.perRec), "before-cpu-µs/record")
		b.ReportMetric(a.perSec, "agent-records/s")
		b.ReportMetric(fs, "fsync/s")
		b.ReportMetric(a.perSec/fs, "agent/fsync")
		b.ReportMetric(a.perSec/per.perSec, "agent/per-update")
		b.ReportMetric(us(before.perRec)/us(a.perRec), "before/agent-cpu")
		b.ReportMetric(us(a.perRec)/us(naive.perRec), "agent/naive-cpu")
		b.Logf("RESULT hotpath records=%d clients=%d agent_cpu_us=%.1f naive_cpu_us=%.1f before_cpu_us=%.1f agent_rps=%.0f perupdate_rps=%.0f before_rps=%.0f fsync_per_s=%.0f agent_over_fsync=%.2f agent_over_perupdate=%.2f",
			n, clients, us(a.perRec), us(naive.perRec), us(before.perRec), a.perSec, per.perSec, before.perSec, fs, a.perSec/fs, a.perSec/per.perSec)
	}
}
