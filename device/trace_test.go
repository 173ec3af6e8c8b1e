package device_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/device/gmp3"
)

var writeTraces = flag.String("write-traces", "", "TestCaptureAndReplay keeps its captures in this directory as sim-<case>.trace (to refresh testdata/traces)")

// TestTraceFormat: a probe with a trace writer records every byte, one
// "<seconds> <tx|rx> <hex>" line per read or write, with comments, and the
// bytes match what the device received.
func TestTraceFormat(t *testing.T) {
	sim := startSim(t, devicetest.Options{Transport: devicetest.TCP, Fault: devicetest.FaultNAKFirst})
	var buf bytes.Buffer
	r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: time.Second, Trace: &buf})
	if _, err := r.Read(context.Background(), ""); err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^(# .*|\d+\.\d{6} (tx|rx) [0-9a-f]+)$`)
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if !line.MatchString(l) {
			t.Fatalf("bad trace line %q", l)
		}
	}
	events, comments, err := device.ReadTrace(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var tx []byte
	var last time.Duration
	for _, e := range events {
		if e.At < last {
			t.Fatalf("time went back: %v after %v", e.At, last)
		}
		last = e.At
		if e.Dir == device.TraceTx {
			tx = append(tx, e.Data...)
		}
	}
	waitFor(t, "the device to get the last ack", func() bool { return len(sim.Received()) >= len(tx) })
	if !bytes.Equal(tx, sim.Received()) {
		t.Fatalf("trace tx %x\ndevice got %x", tx, sim.Received())
	}
	if len(comments) < 3 || !strings.HasPrefix(comments[0], "port "+sim.Port()) {
		t.Fatalf("comments %q", comments)
	}
}

func TestReadTraceRejects(t *testing.T) {
	for _, in := range []string{"0.1 tx", "x tx 06", "0.1 up 06", "0.1 rx 0g", "-1 rx 06", "0.1 rx 06 07", strings.Repeat("0", 70<<10)} {
		if _, _, err := device.ReadTrace(strings.NewReader(in)); !errors.Is(err, device.ErrBadTrace) {
			t.Errorf("%q: %v", in[:min(len(in), 20)], err)
		}
	}
}

// replayParams reads what a trace says about the probe that made it: its
// dialects, header id, sequence and clock (from the probe's comments), and
// the fiscal id it got, if any.
type replayParams struct {
	protocol string
	known    string
	seq      int
	clock    time.Time
	want     string
}

var (
	dialectComment = regexp.MustCompile(`^dialect (\S+), header id (\S{12}), sequence (\d+), clock (\S+)$`)
	answerComment  = regexp.MustCompile(`^answered: fiscal id (\S+) `)
)

func parseReplay(t *testing.T, comments []string) replayParams {
	var p replayParams
	dialects := map[string]bool{}
	for _, c := range comments {
		if m := dialectComment.FindStringSubmatch(c); m != nil {
			dialects[m[1]] = true
			p.protocol = m[1]
			p.known, _ = gmp3.FiscalIDFromHeader(m[2])
			p.seq, _ = strconv.Atoi(m[3])
			var err error
			if p.clock, err = time.ParseInLocation("2006-01-02T15:04:05", m[4], time.Local); err != nil {
				t.Fatal(err)
			}
		}
		if m := answerComment.FindStringSubmatch(c); m != nil {
			p.want = m[1]
		}
	}
	if len(dialects) > 1 {
		p.protocol = device.ProtocolAuto
	}
	if p.seq == 0 {
		t.Fatal("trace has no dialect comment of a probe")
	}
	return p
}

// replay reads a trace file and plays it back: the simulator sends the
// device's bytes, the reader runs with the trace's sequence and clock so it
// sends the same bytes, and the result must match the trace's.
func replay(t *testing.T, path string, tr string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	events, comments, err := device.ReadTrace(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := parseReplay(t, comments)
	d, _ := gmp3.ParseDialect(p.protocol)
	sim := startSim(t, devicetest.Options{Transport: tr, Replay: events, Dialect: d})
	r := newReader(t, device.Config{
		Port: sim.Port(), Protocol: p.protocol, AckTimeout: 2 * time.Second,
		Now: func() time.Time { return p.clock }, Sequence: func() int { return p.seq },
	})
	id, err := r.Read(context.Background(), p.known)
	if p.want != "" {
		if err != nil || id.FiscalSerial != p.want {
			t.Fatalf("replay of %s: %+v, %v; trace answered %s", path, id, err, p.want)
		}
	} else if err == nil {
		t.Fatalf("replay of %s: read %+v, trace got no answer", path, id)
	}
	waitFor(t, "the replay to end", func() bool { done, _ := sim.ReplayResult(); return done })
	if _, mm := sim.ReplayResult(); len(mm) > 0 {
		t.Fatalf("replay of %s: agent's bytes differ from the trace:\n%s", path, strings.Join(mm, "\n"))
	}
	t.Logf("replayed %s over %s: %d events, fiscal id %q, err %v", filepath.Base(path), tr, len(events), id.FiscalSerial, err)
}

// TestReplayCommittedTraces replays every trace in testdata/traces over each
// transport. Drop a capture from a real ÖKC (tposagent device probe --trace
// FILE) there and it becomes a regression test.
func TestReplayCommittedTraces(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "traces", "*.trace"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no committed traces")
	}
	for _, f := range files {
		for _, tr := range transports(t) {
			t.Run(filepath.Base(f)+"/"+tr, func(t *testing.T) { replay(t, f, tr) })
		}
	}
}

// TestCaptureAndReplay captures a probe of the simulator (auto, device on
// T300 so the trace holds NAKs of two dialects first) and replays it.
func TestCaptureAndReplay(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts devicetest.Options
	}{
		{"t300-after-naks", devicetest.Options{Dialect: gmp3.T300, FiscalSerial: "FT40050248"}},
		{"arc", devicetest.Options{}},
		{"busy", devicetest.Options{Fault: devicetest.FaultBusy}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Transport = devicetest.TCP
			sim := startSim(t, tc.opts)
			path := filepath.Join(t.TempDir(), "capture.trace")
			if *writeTraces != "" {
				path = filepath.Join(*writeTraces, "sim-"+tc.name+".trace")
			}
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			r := newReader(t, device.Config{Port: sim.Port(), AckTimeout: time.Second, Trace: f})
			_, _ = r.Read(context.Background(), "")
			f.Close()
			sim.Close()
			replay(t, path, devicetest.TCP)
		})
	}
}
