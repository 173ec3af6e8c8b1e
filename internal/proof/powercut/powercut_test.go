//go:build linux

package powercut

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/testrig/lossyfs"
	tilltest "github.com/tposagent/tposagent/internal/till"
)

// agentBin is the real tposagent, built in TestMain when FUSE can be mounted.
var agentBin string

func TestMain(m *testing.M) {
	if os.Getenv(boltChildEnv) != "" {
		os.Exit(boltChild())
	}
	if os.Getenv(outboxChildEnv) != "" {
		os.Exit(outboxChild())
	}
	if os.Getenv(entryChildEnv) != "" {
		os.Exit(entryChild())
	}
	if lossyfs.Mountable() != nil {
		os.Exit(m.Run()) // the tests skip with the reason
	}
	bin, cleanup, err := tilltest.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// envInt reads a positive count from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}

func seed(t *testing.T) uint64 {
	if s := os.Getenv("TPOSAGENT_POWERCUT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TPOSAGENT_POWERCUT_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

func mountOrSkip(t *testing.T, f *lossyfs.FS, dir string) {
	t.Helper()
	if err := lossyfs.Mountable(); err != nil {
		t.Skipf("power-cut tests need FUSE: %v (run as root with /dev/fuse; Debian: apt-get install fuse3)", err)
	}
	if err := f.Mount(dir); err != nil {
		t.Skipf("power-cut tests need FUSE: %v (run as root with /dev/fuse; Debian: apt-get install fuse3)", err)
	}
	t.Cleanup(func() { f.Unmount() })
}

// maxBacklog is where producers pause: the check lists up to 10000.
const maxBacklog = 2000

const pcToken = "powercut-token-0b3e5c7d9f1a2468"

// item is one record a producer sent; tag is unique over the run.
type item struct {
	tag  int
	kind string // oduyotest.KindKasa or KindSpecialCode
	card string // kasa: the card's integration_id
	id   uint64 // the outbox id from the 202
}

// till is the agent under test (run by the shared real-binary harness,
// internal/till) and what it talks to.
type till struct {
	*tilltest.Till
	t        *testing.T
	dir      string // the mount, the agent's data_dir
	work     string // scratch space off the mount
	control  bool   // a negative control: failures are expected
	cfgPath  string
	fs       *lossyfs.FS
	oduyo    *oduyotest.Server
	secrets  []string
	mu       sync.Mutex
	accepted map[int]item
	attempts atomic.Int64
	tag      atomic.Int64
}

func newTill(t *testing.T, fsys *lossyfs.FS) *till {
	t.Helper()
	root := t.TempDir()
	tl := &till{t: t, dir: filepath.Join(root, "data"), work: t.TempDir(), fs: fsys, accepted: map[int]item{}}
	if err := os.Mkdir(tl.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	mountOrSkip(t, fsys, tl.dir)

	tp := tposltest.NewServer()
	t.Cleanup(tp.Close)
	now := time.Now()
	tp.SetReturn(tposl.Return{Status: true, Aktif: 1, LisansStatus: 1, GMP3Status: 1,
		GMP3ExpDate: now.AddDate(0, 0, 50).Format("2006-01-02"), OnayFiscalSeriNo: "JI20012345"})
	tl.oduyo = oduyotest.NewServer()
	t.Cleanup(tl.oduyo.Close)

	tp.SetCredentials("powercut-kasa", "powercut-Şifre-7731")
	c := tilltest.Config(tl.dir, tilltest.Servers{TPOSLURL: tp.URL(), TPOSLUser: "powercut-kasa", TPOSLPassword: "powercut-Şifre-7731",
		OduyoURL: tl.oduyo.URL(), OduyoUser: tl.oduyo.Username, OduyoAPIKey: tl.oduyo.APIKey, OduyoPassword: tl.oduyo.Password, Token: pcToken})
	c.Outbox.ReconnectJitter = config.Duration{Duration: 50 * time.Millisecond}
	c.Log.Level = "info"
	tl.secrets = []string{c.TPOSL.Password.Reveal(), c.Oduyo.APIKey.Reveal(), c.Oduyo.Password.Reveal(), pcToken}
	tl.cfgPath = filepath.Join(root, "config.toml")
	h, err := tilltest.New(&c, tilltest.Options{Binary: agentBin, ConfigPath: tl.cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	tl.Till = h
	t.Cleanup(tl.kill)
	return tl
}

// start runs the agent; waitAPI waits until its local API answers.
func (tl *till) start() {
	tl.t.Helper()
	if err := tl.Launch(); err != nil {
		tl.t.Fatal(err)
	}
}

func (tl *till) waitAPI() {
	tl.t.Helper()
	if err := tl.WaitAPI(context.Background(), 20*time.Second); err != nil {
		tl.t.Fatal(err)
	}
}

func (tl *till) kill() { tl.Kill() }

// produce enqueues until stop is closed: even tags are kasa updates of one
// of 30 cards (the note carries the tag), odd ones special codes.
func (tl *till) produce(stop <-chan struct{}, rnd *rand.Rand) {
	n, full := 0, false
	for {
		select {
		case <-stop:
			return
		default:
		}
		c := tl.API()
		if c == nil {
			time.Sleep(2 * time.Millisecond) // the agent is down: wait for the next one
			continue
		}
		// Keep the backlog within what one List call shows: while Ödüyo
		// is down the queue only grows.
		if n++; n%20 == 0 || full {
			st, err := c.Status(context.Background())
			if full = err == nil && st.Outbox.Pending > maxBacklog; full {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		tag := int(tl.tag.Add(1))
		it := item{tag: tag}
		var path string
		var col map[string]any
		if tag%2 == 0 {
			it.kind, it.card = oduyotest.KindKasa, fmt.Sprintf("pc-card-%02d", rnd.IntN(30))
			path = "/v1/kasa"
			col = map[string]any{"integration_id": it.card, "status": "1", "note": strconv.Itoa(tag),
				"balance": fmt.Sprintf("%d,%02d", tag, tag%100), "name": "Kasa Ğüşİöç " + strconv.Itoa(tag)}
		} else {
			it.kind = oduyotest.KindSpecialCode
			path = "/v1/special-codes"
			col = map[string]any{"integration_id": fmt.Sprintf("pc-code-%d", tag), "code": "ÖZEL-" + strconv.Itoa(tag), "status": "1"}
		}
		b, _ := json.Marshal(col)
		tl.attempts.Add(1)
		acc, err := c.Enqueue(context.Background(), path, b)
		if err != nil {
			continue // refused, or the agent died: not accepted, nothing to hold it to
		}
		it.id = acc.ID
		tl.mu.Lock()
		tl.accepted[tag] = it
		tl.mu.Unlock()
	}
}

// tagOf finds the tag in a column object (the payload as queued or as
// delivered).
func tagOf(kind string, raw []byte) (int, string, bool) {
	var col map[string]any
	if json.Unmarshal(raw, &col) != nil {
		return 0, "", false
	}
	if inner, ok := col["column"].(map[string]any); ok {
		col = inner
	}
	iid, _ := col["integration_id"].(string)
	if kind == oduyotest.KindKasa {
		note, _ := col["note"].(string)
		n, err := strconv.Atoi(note)
		return n, iid, err == nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(iid, "pc-code-"))
	return n, iid, err == nil
}

// live is what the agent and the server hold: tags pending or dead in the
// queue, tags delivered, and per card the newest tag among them.
type live struct {
	queued, delivered map[int]bool
	newest            map[string]int
	reordered         []string // a card's update delivered after a newer one
	duplicates        int
}

func (tl *till) snapshot(withQueue bool) live {
	tl.t.Helper()
	l := live{queued: map[int]bool{}, delivered: map[int]bool{}, newest: map[string]int{}}
	note := func(kind string, tag int, card string) {
		if kind == oduyotest.KindKasa && tag > l.newest[card] {
			l.newest[card] = tag
		}
	}
	if withQueue {
		// The queue first, then the server: an item leaves the queue only
		// after the server has recorded it, so none falls between.
		c := tl.API()
		for _, state := range []string{"pending", "dead"} {
			items, err := c.List(context.Background(), state, 10000)
			if err != nil {
				tl.t.Fatalf("list %s: %v", state, err)
			}
			if len(items) >= 10000 {
				tl.t.Fatalf("list %s: %d items, more than the check can see", state, len(items))
			}
			for _, it := range items {
				kind := oduyotest.KindSpecialCode
				if it.Kind == "kasa" {
					kind = oduyotest.KindKasa
				}
				tag, card, ok := tagOf(kind, it.Payload)
				if !ok {
					tl.t.Fatalf("queued item %d: no tag in payload %s", it.ID, it.Payload)
				}
				l.queued[tag] = true
				note(kind, tag, card)
			}
		}
	}
	lastSent := map[string]int{}
	for _, d := range tl.oduyo.Delivered() {
		tag, card, ok := tagOf(d.Kind, d.Column)
		if !ok {
			tl.t.Fatalf("delivered record without a tag: %s", d.Column)
		}
		if d.Kind == oduyotest.KindKasa {
			if tag < lastSent[card] {
				l.reordered = append(l.reordered, fmt.Sprintf("%s: update %d after %d", card, tag, lastSent[card]))
			}
			lastSent[card] = tag
		}
		if d.Duplicate {
			l.duplicates++
		}
		l.delivered[tag] = true
		note(d.Kind, tag, card)
	}
	return l
}

// acceptedNow copies the items accepted so far.
func (tl *till) acceptedNow() map[int]item {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return maps.Clone(tl.accepted)
}

// lost returns the accepted items that are neither queued nor delivered
// nor superseded by a newer update of the same card that is. Take accepted
// before the snapshot: producers go on meanwhile.
func lost(accepted map[int]item, l live) []item {
	var out []item
	for tag, it := range accepted {
		if l.queued[tag] || l.delivered[tag] {
			continue
		}
		if it.kind == oduyotest.KindKasa && l.newest[it.card] > tag {
			continue
		}
		out = append(out, it)
	}
	return out
}

// checkDurableFile opens a copy of the outbox file as it survived the cut
// and runs bbolt's full check on it.
func (tl *till) checkDurableFile() error {
	b, err := tl.fs.ReadFile("outbox.db")
	if err != nil || len(b) == 0 {
		// Not created yet, or cut before bbolt's first sync; the lost-item
		// check still holds every 202 to account.
		return nil
	}
	p := filepath.Join(tl.work, "outbox.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return err
	}
	db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open the outbox file after the cut: %w", err)
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("check the outbox file after the cut: %w", err)
		}
		return nil
	})
}

// keep copies the surviving outbox file out of the test's temporary
// directories so that a failure can be looked at.
func (tl *till) keep() string {
	if tl.control {
		return "(not kept: a negative control)"
	}
	b, err := tl.fs.ReadFile("outbox.db")
	if err != nil {
		return "(no outbox file)"
	}
	f, err := os.CreateTemp("", "powercut-outbox-*.db")
	if err != nil {
		return err.Error()
	}
	f.Write(b)
	f.Close()
	return f.Name()
}

func (tl *till) quarantines() []string {
	names, err := tl.fs.Names("")
	if err != nil {
		tl.t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.Contains(n, ".corrupt-") {
			out = append(out, n)
		}
	}
	return out
}

func TestAgentPowerCuts(t *testing.T) {
	cuts := envInt(t, "TPOSAGENT_POWERCUTS", 100)
	sd := seed(t)
	t.Logf("seed=%d cuts=%d (repeat with TPOSAGENT_POWERCUT_SEED=%d)", sd, cuts, sd)
	if failure := runAgentCuts(t, cuts, sd, lossyfs.Options{Rand: rand.New(rand.NewPCG(sd, 2))}); failure != "" {
		t.Fatal(failure)
	}
}

// TestAgentPowerCutsCatchLyingDisk is the negative control: on a disk
// whose fsync sometimes returns without making anything durable, the same
// run must find lost items (or a failed check, or a quarantine). If it did
// not, TestAgentPowerCuts would prove nothing.
func TestAgentPowerCutsCatchLyingDisk(t *testing.T) {
	sd := seed(t)
	t.Logf("seed=%d", sd)
	failure := runAgentCuts(t, 30, sd, lossyfs.Options{Rand: rand.New(rand.NewPCG(sd, 2)), Tear: lossyfs.TearNone, LyingFsync: 0.5})
	if failure == "" {
		t.Fatal("a disk that ignores half the fsyncs lost nothing the test could see")
	}
	t.Logf("caught, as it must be: %s", failure)
}

// TestAgentPowerCutsCatchLyingDirFsync is the negative control for
// directory entries: when no fsync of the data dir takes effect (what an
// agent that forgets them gets), a cut loses the outbox file's name, and
// the run must find accepted items lost.
func TestAgentPowerCutsCatchLyingDirFsync(t *testing.T) {
	sd := seed(t)
	t.Logf("seed=%d", sd)
	failure := runAgentCuts(t, 10, sd, lossyfs.Options{Rand: rand.New(rand.NewPCG(sd, 2)), Tear: lossyfs.TearNone, LyingDirFsync: 1})
	if failure == "" {
		t.Fatal("a disk that ignores every directory fsync lost nothing the test could see")
	}
	t.Logf("caught, as it must be: %s", failure)
}

// runAgentCuts runs the agent through cuts power cuts on lossyfs and
// returns the first broken promise, or "".
func runAgentCuts(t *testing.T, cuts int, sd uint64, fsOpts lossyfs.Options) string {
	rnd := rand.New(rand.NewPCG(sd, 1))
	fsys := lossyfs.New(fsOpts)
	tl := newTill(t, fsys)
	tl.control = fsOpts.LyingFsync > 0 || fsOpts.LyingDirFsync > 0
	tl.start()
	tl.waitAPI()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); tl.produce(stop, rand.New(rand.NewPCG(sd, uint64(10+p)))) }()
	}
	// Ödüyo flaps: down and up at random, mostly up.
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(sd, 3))
		for {
			down := r.IntN(3) == 0
			tl.oduyo.SetDown(down)
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(20+r.IntN(300)) * time.Millisecond):
			}
		}
	}()
	stopAll := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopAll)

	var torn, unsynced, dropped, early, fsyncFailures int
	for cut := 1; cut <= cuts; cut++ {
		// A random moment: mostly while the agent serves, sometimes while
		// it is still starting (opening, checking, maybe compacting).
		if rnd.IntN(5) == 0 {
			early++
			time.Sleep(time.Duration(rnd.IntN(60)) * time.Millisecond)
		} else {
			if tl.API() == nil {
				tl.waitAPI()
			}
			time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond)
		}
		rep := fsys.Cut()
		tl.kill()
		torn += rep.TornOps
		unsynced += rep.UnsyncedOps
		dropped += rep.DroppedOps
		if err := fsys.Unmount(); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if err := tl.checkDurableFile(); err != nil {
			return fmt.Sprintf("cut %d (seed %d): %v; file kept at %s", cut, sd, err, tl.keep())
		}
		if err := fsys.Mount(tl.dir); err != nil {
			t.Fatalf("cut %d: remount: %v", cut, err)
		}
		tl.start()
		if rnd.IntN(5) != 0 || cut == cuts {
			tl.waitAPI()
			if q := tl.quarantines(); len(q) > 0 {
				return fmt.Sprintf("cut %d (seed %d): the agent quarantined its outbox after a power cut: %v", cut, sd, q)
			}
			acc := tl.acceptedNow()
			if lost := lost(acc, tl.snapshot(true)); len(lost) > 0 {
				return fmt.Sprintf("cut %d (seed %d): %d accepted items lost, e.g. %+v; file kept at %s", cut, sd, len(lost), lost[0], tl.keep())
			}
		}
	}
	fsyncFailures = fsys.Stats().FailedAfterCut

	// Drain: producers stop, Ödüyo stays up, the queue must empty.
	stopAll()
	tl.oduyo.SetDown(false)
	if tl.API() == nil {
		tl.waitAPI()
	}
	var st localapi.Status
	for deadline := time.Now().Add(60 * time.Second); ; {
		s, err := tl.API().Status(context.Background())
		if err == nil && s.Outbox.Pending == 0 && s.Outbox.InFlight == 0 {
			st = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue did not drain in 60 s: %+v, %v\n%s", s.Outbox, err, tl.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	l := tl.snapshot(false)
	var failures []string
	missing := lost(tl.acceptedNow(), l)
	for i, it := range missing {
		if i < 10 {
			failures = append(failures, fmt.Sprintf("accepted, never delivered: %+v", it))
		}
	}
	for i, r := range l.reordered {
		if i < 10 {
			failures = append(failures, "per-card order broken: "+r)
		}
	}
	q := tl.quarantines()
	if len(q) > 0 || st.Outbox.Quarantined != "" {
		failures = append(failures, fmt.Sprintf("quarantined outbox files: %v %q", q, st.Outbox.Quarantined))
	}
	if st.Outbox.Dead != 0 {
		failures = append(failures, fmt.Sprintf("%d dead letters, want 0", st.Outbox.Dead))
	}
	tl.mu.Lock()
	accepted := len(tl.accepted)
	tl.mu.Unlock()
	if accepted < cuts {
		t.Errorf("only %d items accepted over %d cuts: the producers barely ran", accepted, cuts)
	}
	tl.kill()
	tl.scanSecrets(t)
	fst := fsys.Stats()
	t.Logf("RESULT cuts=%d items=%d lost=%d torn_writes=%d quarantines=%d unsynced_ops=%d dropped_ops=%d delivered=%d duplicates=%d reordered=%d attempts=%d early_cuts=%d refused_after_cut=%d fsyncs=%d dir_fsyncs=%d pending_renames_lost=%d seed=%d",
		cuts, accepted, len(missing), torn, len(q), unsynced, dropped, len(l.delivered), l.duplicates, len(l.reordered),
		tl.attempts.Load(), early, fsyncFailures, fst.Fsyncs, fst.DirFsyncs, fst.PendingRenamesLost, sd)
	return strings.Join(failures, "; ")
}

// scanSecrets fails if a configured secret or an Ödüyo session id shows in
// the agent's output of any run or in a file that survived on the mount.
func (tl *till) scanSecrets(t *testing.T) {
	t.Helper()
	secrets := append(slices.Clone(tl.secrets), tl.oduyo.Sessions()...)
	texts := map[string][]byte{"agent stderr": bytes.Join(tl.Outputs(), nil)}
	names, _ := tl.fs.Names("")
	for _, n := range names {
		if b, err := tl.fs.ReadFile(n); err == nil {
			texts[n] = b
		}
	}
	scanned := 0
	for name, b := range texts {
		scanned += len(b)
		for _, s := range secrets {
			if s != "" && bytes.Contains(b, []byte(s)) {
				t.Errorf("secret %q… found in %s", s[:3], name)
			}
		}
	}
	t.Logf("secret scan: %d secrets and session ids in %d texts, %d bytes", len(secrets), len(texts), scanned)
}
