package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// withKey returns validFile with key (dotted, one level under a table)
// set to the raw TOML value.
func withKey(t *testing.T, key, value string) string {
	t.Helper()
	table, name, ok := strings.Cut(key, ".")
	if !ok {
		t.Fatalf("key %q has no table", key)
	}
	// Drop the key where validFile has it, then set it under its table
	// (added at the end when validFile has none: a table opens once).
	var lines []string
	current, found := "", false
	for _, l := range strings.Split(validFile, "\n") {
		if strings.HasPrefix(l, "[") {
			current = strings.Trim(l, "[] ")
		}
		if current == table && strings.HasPrefix(l, name+" ") {
			continue
		}
		lines = append(lines, l)
		if l == "["+table+"]" {
			lines = append(lines, name+" = "+value)
			found = true
		}
	}
	if !found {
		lines = append(lines, "["+table+"]", name+" = "+value, "")
	}
	return strings.Join(lines, "\n")
}

func wantKeyError(t *testing.T, err error, key, text string) {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != key || !strings.Contains(err.Error(), text) {
		t.Fatalf("err = %v, want a config error naming %s and saying %q", err, key, text)
	}
}

// TestFloorsAreErrors: the sub-floor values once accepted
// accepted with a warning are config errors naming the key. On the old
// code tposl.interval = "1s" and max_size = 256 loaded.
func TestFloorsAreErrors(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{"tposl.interval", `"1s"`, "at least 1m"},
		{"tposl.interval", `"59s"`, "at least 1m"},
		{"outbox.max_size", `256`, "no unit"},
		{"outbox.max_size", `"256"`, "no unit"},
		{"outbox.max_size", `"268435456"`, "no unit"},
		{"outbox.max_size", `"512KiB"`, "at least 1MiB"},
		{"outbox.max_size", `"1000000B"`, "at least 1MiB"},
		{"log.max_size", `10485760`, "no unit"},
		{"outbox.retry_max", `"10ms"`, "at least 1s"},
		{"device.ack_timeout", `"1ms"`, "at least 100ms"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			_, err := Load(write(t, t.TempDir(), withKey(t, tc.key, tc.value)))
			wantKeyError(t, err, tc.key, tc.want)
		})
	}
	for _, ok := range []struct{ key, value string }{
		{"tposl.interval", `"1m"`}, {"outbox.max_size", `"1MiB"`}, {"outbox.max_size", `"1048576B"`},
		{"outbox.max_size", `"4GiB"`}, {"tposl.grace", `"7d"`}, {"tposl.interval", `"1d"`},
	} {
		if _, err := Load(write(t, t.TempDir(), withKey(t, ok.key, ok.value))); err != nil {
			t.Errorf("%s = %s: %v", ok.key, ok.value, err)
		}
	}
	// The warnings that used to stand in for these errors are gone.
	c := Default()
	for _, w := range c.Warnings() {
		if strings.Contains(w, "very short") || strings.Contains(w, "under 1MiB") {
			t.Errorf("warning left: %q", w)
		}
	}
}

// TestEveryBoundHolds: for each row of Bounds whose key this build has,
// the floor and the ceiling are accepted, one step outside either is an
// error naming the key, through the file as the agent reads it.
func TestEveryBoundHolds(t *testing.T) {
	for _, b := range Bounds {
		var c Config
		_, kind, ok := c.field(b.Key)
		if !ok {
			continue // a row for a key of another branch (TestBoundRowsNameKeys)
		}
		lit := func(n int64) string {
			if kind == durationKey {
				return fmt.Sprintf("%q", time.Duration(n).String())
			}
			return fmt.Sprintf("%q", fmt.Sprintf("%dB", n))
		}
		step := int64(1)
		if kind == durationKey {
			step = int64(time.Millisecond)
		}
		valid := []int64{b.Min, b.Max}
		if b.Off {
			valid = append(valid, 0)
		}
		for _, v := range valid {
			if v == 0 && kind == sizeKey {
				continue
			}
			body := withKey(t, b.Key, lit(v))
			switch {
			case b.Key == "tposl.interval" && v == b.Max:
				body = strings.Replace(body, "[tposl]\n", "[tposl]\ngrace = \"30d\"\n", 1)
			case b.Key == "tposl.grace":
				body = strings.Replace(body, `interval = "1h"`, `interval = "1m"`, 1)
			}
			if _, err := Load(write(t, t.TempDir(), body)); err != nil {
				t.Errorf("%s = %s: %v", b.Key, lit(v), err)
			}
		}
		outside := []int64{b.Max + step}
		if b.Min-step >= 0 && !(b.Off && b.Min-step == 0) {
			outside = append(outside, b.Min-step)
		}
		if !b.Off && kind == durationKey {
			outside = append(outside, 0)
		}
		for _, v := range outside {
			_, err := Load(write(t, t.TempDir(), withKey(t, b.Key, lit(v))))
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != b.Key {
				t.Errorf("%s = %s: err = %v, want an error naming the key", b.Key, lit(v), err)
			}
		}
	}
}

// TestEveryDurationAndSizeKeyHasABound: a new duration or size key cannot
// be added without its row.
func TestEveryDurationAndSizeKeyHasABound(t *testing.T) {
	keys := boundedKeys()
	if len(keys) < 10 {
		t.Fatalf("found only %d duration and size keys: %q", len(keys), keys)
	}
	for _, k := range keys {
		if _, ok := BoundOf(k); !ok {
			t.Errorf("%s has no row in Bounds (internal/config/bounds.go)", k)
		}
	}
}

// TestBoundRowsNameKeys: every row names a duration or size key, once, with a floor not above its ceiling.
func TestBoundRowsNameKeys(t *testing.T) {
	seen := map[string]bool{}
	for _, b := range Bounds {
		if seen[b.Key] {
			t.Errorf("%s has two rows", b.Key)
		}
		seen[b.Key] = true
		if b.Min > b.Max || b.Min < 0 || b.Example == "" {
			t.Errorf("%s: min %d, max %d, example %q", b.Key, b.Min, b.Max, b.Example)
		}
		var c Config
		_, kind, ok := c.field(b.Key)
		switch {
		case !ok:
			t.Errorf("row %s names no key of Config", b.Key)
		case ok && kind == notBounded:
			t.Errorf("row %s names a key that is neither a duration nor a size", b.Key)
		}
	}
	for _, key := range []string{"tposl.interval", "outbox.max_size", "device.ack_timeout", "device.probe_budget", "device.hold_max", "device.reopen_gap", "device.pos_report_max_age"} {
		if !seen[key] {
			t.Errorf("no row for %s", key)
		}
	}
	if b, _ := BoundOf("tposl.interval"); b.Min != int64(time.Minute) {
		t.Errorf("tposl.interval floor %v, DESIGN says 1m", time.Duration(b.Min))
	}
	if b, _ := BoundOf("outbox.max_size"); b.Min != 1<<20 {
		t.Errorf("outbox.max_size floor %d, want 1MiB", b.Min)
	}
}

// TestNoFloorsForTests: the test-only override lowers the floors, keeps
// the ceilings and the units, and says so in the warnings.
func TestNoFloorsForTests(t *testing.T) {
	path := write(t, t.TempDir(), strings.Replace(validFile, `interval = "1h"`, `interval = "2s"`, 1))
	if _, err := Load(path); err == nil {
		t.Fatal("interval 2s accepted without the override")
	}
	t.Setenv(NoFloorsEnv, "1")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("with %s=1: %v", NoFloorsEnv, err)
	}
	if c.TPOSL.Interval.Duration != 2*time.Second || !strings.Contains(strings.Join(c.Warnings(), "\n"), NoFloorsEnv) {
		t.Errorf("interval %v, warnings %q", c.TPOSL.Interval, c.Warnings())
	}
	_, err = Load(write(t, t.TempDir(), strings.Replace(validFile, `interval = "1h"`, `interval = "0s"`, 1)))
	wantKeyError(t, err, "tposl.interval", "positive")
	_, err = Load(write(t, t.TempDir(), strings.Replace(validFile, `max_size = "64MiB"`, `max_size = "64"`, 1)))
	wantKeyError(t, err, "outbox.max_size", "no unit")
	_, err = Load(write(t, t.TempDir(), strings.Replace(validFile, `interval = "1h"`, `interval = "30d"`, 1)))
	wantKeyError(t, err, "tposl.interval", "at most")
	t.Setenv(NoFloorsEnv, "yes")
	if _, err := Load(path); err == nil {
		t.Errorf("%s=yes lowered the floors; only 1 does", NoFloorsEnv)
	}
}

// TestDays: durations take whole days in front.
func TestDays(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * day, "1d12h": 36 * time.Hour, " 2d ": 2 * day, "-1d": -day, "90m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%q = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"d", "7dd", "1.5d", "1d-3h", "99999999999d", "x7d"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("%q = %v, want an error", in, got)
		}
	}
}

// TestSizesEncodeWithUnit: what Encode writes loads again, whatever the
// size.
func TestSizesEncodeWithUnit(t *testing.T) {
	c, err := Parse([]byte(validFile), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	c.Outbox.MaxSize = 1<<20 + 1
	c.Log.MaxSize = 100001
	back, err := Load(write(t, t.TempDir(), string(Encode(c))))
	if err != nil || back.Outbox.MaxSize != c.Outbox.MaxSize || back.Log.MaxSize != c.Log.MaxSize {
		t.Fatalf("round trip: %v %v %v", back.Outbox.MaxSize, back.Log.MaxSize, err)
	}
}
