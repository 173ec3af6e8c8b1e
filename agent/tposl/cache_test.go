package tposl_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/tposl"
)

func TestCacheSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	c := tposl.Cache{Path: filepath.Join(dir, "license.json")}

	_, err := c.Load()
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load without a file: %v, want os.ErrNotExist", err)
	}

	rec := tposl.Record{
		Return: ok(func(r *tposl.Return) {
			r.LisansStatus = 1
			r.ErrorMessage = "Başarılı: ğüşıöçİ"
			r.DemoBasTarih = "/Date(1795420800000+0300)/"
		}),
		FiscalSerial: ours,
		CheckedAt:    fixedNow,
	}
	if err := c.Save(rec); err != nil {
		t.Fatal(err)
	}
	got, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got.Return != rec.Return || got.FiscalSerial != ours || !got.CheckedAt.Equal(fixedNow) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, rec)
	}

	// Overwrite; no temporary files stay behind.
	rec.Return.Aktif = 0
	rec.CheckedAt = fixedNow.Add(time.Hour)
	if err := c.Save(rec); err != nil {
		t.Fatal(err)
	}
	if got, err = c.Load(); err != nil || got.Return.Aktif != 0 || !got.CheckedAt.Equal(rec.CheckedAt) {
		t.Errorf("after overwrite: %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "license.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v", names)
	}
	if runtime.GOOS != "windows" {
		st, err := os.Stat(c.Path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, %v", st.Mode(), err)
		}
	}
}

func TestCacheCorrupt(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":   "{{{{",
		"truncated": `{"version":1,"return":{"Status":tr`,
		"version":   `{"version":7}`,
		"empty":     "",
	} {
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := tposl.Cache{Path: p}.Load()
		if !errors.Is(err, tposl.ErrCacheCorrupt) || errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want ErrCacheCorrupt", name, err)
		}
	}
	// A directory in the way of the file is an error, not a panic.
	if err := (tposl.Cache{Path: dir}).Save(tposl.Record{}); err == nil {
		t.Error("Save over a directory succeeded")
	}
	if err := (tposl.Cache{}).Save(tposl.Record{}); err == nil {
		t.Error("Save without a path succeeded")
	}
}

func TestEffective(t *testing.T) {
	demoRec := tposl.Record{
		Return:       ok(func(r *tposl.Return) { r.DemoBasTarih, r.DemoLisansGun = "2026-11-13", 30 }),
		FiscalSerial: ours,
		CheckedAt:    fixedNow,
	}
	licRec := tposl.Record{Return: ok(func(r *tposl.Return) { r.LisansStatus = 1 }), FiscalSerial: ours, CheckedAt: fixedNow}
	day := 24 * time.Hour
	tests := []struct {
		name     string
		rec      tposl.Record
		serial   string
		now      time.Time
		grace    time.Duration
		state    tposl.State
		daysLeft int
		source   string
		msg      string
	}{
		{"fresh", licRec, ours, fixedNow.Add(time.Minute), 0, tposl.Licensed, -1, "cache", "saved answer of 2026-11-23 10:00:00"},
		{"demo counts down offline", demoRec, ours, fixedNow.Add(3 * day), 0, tposl.Demo, 17, "cache", "17 days left"},
		{"demo ends offline", demoRec, ours, fixedNow.Add(21 * day), 30 * day, tposl.Expired, 0, "cache", "ended"},
		{"just inside the default grace", licRec, ours, fixedNow.Add(7 * day), 0, tposl.Licensed, -1, "cache", ""},
		{"past the default grace", licRec, ours, fixedNow.Add(7*day + time.Second), 0, tposl.StateUnknown, -1, "cache", "grace period of 7 days"},
		{"custom grace", licRec, ours, fixedNow.Add(2 * day), 36 * time.Hour, tposl.StateUnknown, -1, "cache", "longer than the grace period"},
		{"clock turned back", licRec, ours, fixedNow.Add(-3 * day), 0, tposl.StateUnknown, -1, "cache", "clock was turned back"},
		{"small clock skew is fine", licRec, ours, fixedNow.Add(-time.Hour), 0, tposl.Licensed, -1, "cache", ""},
		{"other device", licRec, "JI20099999", fixedNow, 0, tposl.StateUnknown, -1, "cache", "for fiscal serial JI20012345"},
		{"unknown device uses the cache", licRec, "", fixedNow, 0, tposl.Mismatch, -1, "cache", ""},
		{"no record", tposl.Record{}, ours, fixedNow, 0, tposl.StateUnknown, -1, "none", "no saved answer"},
		{"cached refusal stays a refusal", tposl.Record{Return: tposl.Return{ErrorMessage: "yok"}, CheckedAt: fixedNow}, ours, fixedNow, 0, tposl.Unregistered, -1, "cache", "yok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := tposl.Effective(tt.rec, tt.serial, tt.now, tt.grace)
			if l.State != tt.state || l.DaysLeft != tt.daysLeft || l.Source != tt.source {
				t.Errorf("got %s/%d/%s, want %s/%d/%s (%s)", l.State, l.DaysLeft, l.Source, tt.state, tt.daysLeft, tt.source, l.Message)
			}
			if !strings.Contains(l.Message, tt.msg) {
				t.Errorf("message %q lacks %q", l.Message, tt.msg)
			}
			if tt.source == "cache" && !l.CheckedAt.Equal(tt.rec.CheckedAt) {
				t.Errorf("checked_at %v, want the answer's %v", l.CheckedAt, tt.rec.CheckedAt)
			}
		})
	}
}

// TestCacheThroughRestart is the offline story: an answer saved by one
// process is what the next one shows while the server is away.
func TestCacheThroughRestart(t *testing.T) {
	c := tposl.Cache{Path: filepath.Join(t.TempDir(), "license.json")}
	r := ok(func(r *tposl.Return) { r.DemoBasTarih, r.DemoLisansGun = "13.11.2026", 30 })
	if err := c.Save(tposl.Record{Return: r, FiscalSerial: ours, CheckedAt: fixedNow}); err != nil {
		t.Fatal(err)
	}
	rec, err := tposl.Cache{Path: c.Path}.Load()
	if err != nil {
		t.Fatal(err)
	}
	online := tposl.Evaluate(r, ours, fixedNow)
	offline := tposl.Effective(rec, ours, fixedNow, 0)
	if offline.State != online.State || offline.DaysLeft != online.DaysLeft || offline.GMP3 != online.GMP3 {
		t.Errorf("offline %+v\nonline %+v", offline, online)
	}
}

// TestCacheConcurrent: readers never see a torn record while writers
// replace it.
func TestCacheConcurrent(t *testing.T) {
	c := tposl.Cache{Path: filepath.Join(t.TempDir(), "license.json")}
	if err := c.Save(tposl.Record{Return: tposl.Return{Status: true, Id: 0}, CheckedAt: fixedNow}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= 20; i++ {
				msg := strings.Repeat("ğ", 500*i) // records of different sizes
				if err := c.Save(tposl.Record{Return: tposl.Return{Status: true, Id: i, ErrorMessage: msg}, CheckedAt: fixedNow}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				rec, err := c.Load()
				if err != nil {
					errs <- err
					return
				}
				if !rec.Return.Status || len([]rune(rec.Return.ErrorMessage)) != 500*rec.Return.Id {
					errs <- fmt.Errorf("torn record: id %d, %d runes", rec.Return.Id, len([]rune(rec.Return.ErrorMessage)))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
