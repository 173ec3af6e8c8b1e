//go:build linux

package main

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
)

// TestFootprint (Linux: it reads /proc) measures the idle agent: resident memory, CPU over a
// window (TPOSAGENT_FOOTPRINT_SECONDS, default 5; the README figure uses
// 60), binary size and the time from start to the local API answering.
func TestFootprint(t *testing.T) {
	window := 5 * time.Second
	if s := os.Getenv("TPOSAGENT_FOOTPRINT_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		window = time.Duration(n) * time.Second
	}
	f := newFixture(t)
	var startup time.Duration
	for i := 0; i < 5; i++ { // the best of five starts: the machine is shared
		d := f.start()
		if i == 0 || d < startup {
			startup = d
		}
		if i < 4 {
			f.stop()
		}
	}
	pid := f.PID()
	testrig.WaitFor(t, "registration", 10*time.Second, func() bool { return f.tposl.Calls() > 0 })
	time.Sleep(500 * time.Millisecond) // let start-up work settle before the idle window
	cpu0, t0 := cpuTicks(t, pid), time.Now()
	time.Sleep(window) // measuring idle CPU over wall time: the sleep is the measurement
	cpu1, elapsed := cpuTicks(t, pid), time.Since(t0)
	const clkTck = 100 // USER_HZ on Linux
	cpuPct := float64(cpu1-cpu0) / clkTck / elapsed.Seconds() * 100
	rss := rssKB(t, pid)
	st, _ := os.Stat(binary)
	t.Logf("RESULT footprint rss_kb=%d cpu_pct=%.2f window_s=%.0f binary_bytes=%d startup_ms=%.1f",
		rss, cpuPct, elapsed.Seconds(), st.Size(), float64(startup.Microseconds())/1000)
	if rss > 25*1024 {
		t.Errorf("idle RSS %d KiB, target ≤ 25 MiB", rss)
	}
	if cpuPct > 1 {
		t.Errorf("idle CPU %.2f%% of a core, target ≤ 1%%", cpuPct)
	}
	if startup > 200*time.Millisecond && !raceEnabled {
		t.Errorf("local API answered %v after start, target ≤ 200 ms", startup)
	}
}

func cpuTicks(t *testing.T, pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the ")" of the command name: state is field 3; utime
	// and stime are fields 14 and 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func rssKB(t *testing.T, pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
