package outbox_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/outbox"
)

// The crash test re-executes this test binary as a helper process that
// enqueues and drains against a loopback server, and kill -9s it at random
// moments. Environment of the helper:
const (
	crashHelperEnv = "OUTBOX_CRASH_HELPER" // "enqueue" or "drain"
	crashPathEnv   = "OUTBOX_CRASH_PATH"
	crashURLEnv    = "OUTBOX_CRASH_URL"
	crashRunEnv    = "OUTBOX_CRASH_RUN"
)

const (
	crashKeys       = 8
	crashPerKey     = 12
	crashSeqPerRun  = 1000
	defaultCrashRun = 50
)

type crashPayload struct {
	Key string `json:"key"`
	Seq int    `json:"seq"`
	Pad string `json:"pad"`
}

// crashHelperMain is the helper process: it prints "ack KEY SEQ" after
// each Enqueue returned, "enqueued" when done, "drained" when empty.
func crashHelperMain() int {
	mode := os.Getenv(crashHelperEnv)
	run, _ := strconv.Atoi(os.Getenv(crashRunEnv))
	q, err := outbox.Open(outbox.Options{
		Path: os.Getenv(crashPathEnv), OpenTimeout: 10 * time.Second,
		RetryBase: 2 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		CompactMinSize: 64 << 10,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	st, _ := q.Stats()
	if st.Quarantined != "" {
		fmt.Fprintln(os.Stderr, "helper: file was quarantined:", st.Quarantined)
		return 3
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = q.Run(ctx, newHTTPSender(os.Getenv(crashURLEnv), true)) }()
	var outMu sync.Mutex
	say := func(s string) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintln(os.Stdout, s)
	}
	if mode == "enqueue" {
		var wg sync.WaitGroup
		for k := range crashKeys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprint("kasa:", k)
				for i := range crashPerKey {
					seq := run*crashSeqPerRun + i
					p, _ := json.Marshal(crashPayload{Key: key, Seq: seq, Pad: "Çağrı Öğüş"})
					if _, err := q.Enqueue(ctx, outbox.Entry{Kind: outbox.KindKasa, Key: key, Payload: p}); err != nil {
						fmt.Fprintln(os.Stderr, "helper: enqueue:", err)
						os.Exit(1)
					}
					say(fmt.Sprintf("ack %s %d", key, seq))
				}
			}()
		}
		wg.Wait()
		say("enqueued")
	}
	for {
		st, err := q.Stats()
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper: stats:", err)
			return 1
		}
		if st.Pending == 0 && st.InFlight == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	say("drained")
	cancel()
	if err := q.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "helper: close:", err)
		return 1
	}
	return 0
}

// TestCrashKill9 kills the helper at random moments (OUTBOX_CRASH_KILLS,
// default 50) and then checks that every acknowledged item was delivered,
// in order per key, and that the file opens cleanly.
func TestCrashKill9(t *testing.T) {
	kills := defaultCrashRun
	if v, err := strconv.Atoi(os.Getenv("OUTBOX_CRASH_KILLS")); err == nil && v > 0 {
		kills = v
	}
	var mu sync.Mutex
	delivered := map[string][]int{}
	requests := 0
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return
		}
		body, _ := io.ReadAll(r.Body)
		var p crashPayload
		if err := json.Unmarshal(body, &p); err != nil || r.Header.Get("Idempotency-Key") == "" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		requests++
		if requests%10 == 3 { // transient failures along the way
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		delivered[p.Key] = append(delivered[p.Key], p.Seq)
		_, _ = w.Write([]byte(`{"status":true}`))
	}))
	defer srv.Close()

	path := filepath.Join(t.TempDir(), "outbox.db")
	acked := map[string][]int{}
	spawn := func(mode string, run int) (*exec.Cmd, *bufio.Scanner) {
		// wine's process creation fails now and then ("Internal error")
		// under load: a start is tried three times.
		for try := 1; ; try++ {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashHelperEnv+"="+mode, crashPathEnv+"="+path, crashURLEnv+"="+srv.URL, crashRunEnv+"="+strconv.Itoa(run))
			cmd.Stderr = os.Stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			err = cmd.Start()
			if err == nil {
				return cmd, bufio.NewScanner(out)
			}
			if try == 3 {
				t.Fatal(err)
			}
			t.Logf("start of the helper failed (try %d): %v", try, err)
		}
	}
	record := func(line string) bool {
		var key string
		var seq int
		if _, err := fmt.Sscanf(line, "ack %s %d", &key, &seq); err == nil {
			acked[key] = append(acked[key], seq)
			return true
		}
		return false
	}
	killedDuringDrain := 0
	for run := 1; run <= kills; run++ {
		cmd, sc := spawn("enqueue", run)
		target := rng.IntN(crashKeys*crashPerKey + 40)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if record(line) {
				n++
			}
			if n >= target {
				break
			}
			if line == "enqueued" {
				// Kill somewhere in the drain.
				time.Sleep(time.Duration(rng.IntN(15_000)) * time.Microsecond)
				killedDuringDrain++
				break
			}
		}
		if err := cmd.Process.Kill(); err != nil {
			t.Fatalf("run %d: kill: %v", run, err)
		}
		for sc.Scan() { // acks already written before the kill still count
			record(sc.Text())
		}
		_ = cmd.Wait()
	}
	cmd, sc := spawn("drain", kills+1)
	done := make(chan bool, 1)
	go func() {
		ok := false
		for sc.Scan() {
			ok = ok || sc.Text() == "drained"
		}
		done <- ok
	}()
	select {
	case ok := <-done:
		if err := cmd.Wait(); err != nil || !ok {
			t.Fatalf("final drain: %v, drained=%v", err, ok)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("final drain did not finish")
	}

	mu.Lock()
	defer mu.Unlock()
	total := 0
	for key, seqs := range acked {
		got := map[int]bool{}
		for _, s := range delivered[key] {
			got[s] = true
		}
		for _, s := range seqs {
			total++
			if !got[s] {
				t.Errorf("%s seq %d: acknowledged but never delivered", key, s)
			}
		}
	}
	dups := 0
	for key, seqs := range delivered {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] < seqs[i-1] {
				t.Errorf("%s: seq %d delivered after %d", key, seqs[i], seqs[i-1])
			}
			if seqs[i] == seqs[i-1] {
				dups++
			}
		}
	}
	q, err := outbox.Open(outbox.Options{Path: path})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer q.Close()
	st, err := q.Stats()
	if err != nil || st.Quarantined != "" || st.Pending != 0 || st.Dead != 0 {
		t.Fatalf("final stats %+v %v", st, err)
	}
	t.Logf("%d kills (%d during a drain), %d acknowledged items all delivered, %d requests, %d redeliveries",
		kills, killedDuringDrain, total, requests, dups)
	if total == 0 {
		t.Fatal("nothing was acknowledged")
	}
}
