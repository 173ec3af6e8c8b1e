package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Bound is the range a duration or size key accepts: a floor and a
// ceiling that make sense on a till. A value outside is a config error
// naming the key (not a warning): a till that registers every second or
// a queue that holds two records is a mistake, not a choice.
type Bound struct {
	Key string // dotted, as in the file: "tposl.interval"
	// Min and Max are a time.Duration for a duration key and bytes for a
	// size key, both inclusive.
	Min, Max int64
	// Off: 0 is accepted too, and turns the feature off.
	Off bool
	// Example is a good value, quoted in the error.
	Example string
}

// Bounds is the one table of every duration and size key's floor and
// ceiling; Validate checks each row and TestEveryDurationAndSizeKeyHasABound
// fails for a key without one. A new key adds a row here (and to README's
// config table).
//
// A row whose key this build's Config does not have is skipped: rows for
// keys another branch is adding may come first.
var Bounds = []Bound{
	// The licence server: a registration also opens the ÖKC, so more often
	// than once a minute hammers both; a week is the longest a licence
	// change may go unnoticed.
	{Key: "tposl.interval", Min: int64(time.Minute), Max: int64(7 * day), Example: "6h"},
	{Key: "tposl.timeout", Min: int64(time.Second), Max: int64(5 * time.Minute), Example: "30s"},
	{Key: "tposl.grace", Min: int64(time.Hour), Max: int64(90 * day), Example: "7d"},
	{Key: "oduyo.timeout", Min: int64(time.Second), Max: int64(5 * time.Minute), Example: "20s"},

	// The fiscal device (DESIGN "Fiscal device"): a live ÖKC ACKs within
	// milliseconds; the POS must get its port back within a hold.
	{Key: "device.timeout", Min: int64(100 * time.Millisecond), Max: int64(time.Minute), Off: true, Example: "1.5s"}, // the earlier name of ack_timeout (read as it; 0 = not set), checked first to be named
	{Key: "device.ack_timeout", Min: int64(100 * time.Millisecond), Max: int64(time.Minute), Example: "1.5s"},
	{Key: "device.probe_budget", Min: int64(time.Second), Max: int64(10 * time.Minute), Example: "45s"},
	{Key: "device.hold_max", Min: int64(MinHoldMax), Max: int64(MaxHoldMax), Example: "2s"},
	{Key: "device.reopen_gap", Min: int64(MinReopenGap), Max: int64(MaxReopenGap), Example: "5s"},
	{Key: "device.pos_report_max_age", Min: int64(MinPOSReportMaxAge), Max: int64(MaxPOSReportMaxAge), Example: "7d"},

	// The outbox: under 1 MiB it fills after a few records; the ceilings
	// keep a typo ("6000h", "256GiB") from leaving a till silent or its
	// disk full.
	{Key: "outbox.max_size", Min: 1 << 20, Max: 4 << 30, Example: "256MiB"},
	{Key: "outbox.retry_max", Min: int64(time.Second), Max: int64(time.Hour), Example: "5m"},
	{Key: "outbox.reconnect_jitter", Min: 0, Max: int64(10 * time.Minute), Off: true, Example: "30s"},
	{Key: "outbox.retry_after_max", Min: int64(time.Second), Max: int64(24 * time.Hour), Example: "1h"},

	{Key: "log.max_size", Min: 64 << 10, Max: 1 << 30, Example: "10MiB"},
}

const day = 24 * time.Hour

// MaxLogBackups is the most rotated log files kept (log.max_backups).
const MaxLogBackups = 100

// NoFloorsEnv, set to "1", lowers every floor of Bounds to the smallest
// value the key can take (ceilings and the unit of sizes still hold). It
// is for tests that run the real binary and need, say, a registration
// every two seconds; never for a till: the status says it is set.
// Config.NoFloors is the same for a test that builds a Config in process.
const NoFloorsEnv = "TPOSAGENT_TEST_NO_FLOORS"

// BoundOf returns the row of key.
func BoundOf(key string) (Bound, bool) {
	for _, b := range Bounds {
		if b.Key == key {
			return b, true
		}
	}
	return Bound{}, false
}

// keyKind is what a Bound's key holds.
type keyKind int

const (
	notBounded keyKind = iota
	durationKey
	sizeKey
)

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

// field finds the field of a dotted key by the toml tags.
func (c *Config) field(key string) (reflect.Value, keyKind, bool) {
	v := reflect.ValueOf(c).Elem()
	for _, part := range strings.Split(key, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, notBounded, false
		}
		found := false
		for i := 0; i < v.NumField(); i++ {
			if tomlName(v.Type().Field(i)) == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, notBounded, false
		}
	}
	switch v.Type() {
	case durationType:
		return v, durationKey, true
	case sizeType:
		return v, sizeKey, true
	}
	return v, notBounded, true
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	return name
}

// boundedKeys lists the dotted keys of every Duration and Size field.
func boundedKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := tomlName(f)
			if name == "" || name == "-" {
				continue
			}
			switch {
			case f.Type == durationType || f.Type == sizeType:
				keys = append(keys, prefix+name)
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, prefix+name+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
}

// checkBounds checks every row of Bounds, and that sizes carry a unit.
func (c *Config) checkBounds() error {
	for _, b := range Bounds {
		fv, kind, ok := c.field(b.Key)
		if !ok || kind == notBounded {
			continue
		}
		var v int64
		show := func(n int64) string { return Size(n).String() }
		if kind == durationKey {
			v = int64(fv.Interface().(Duration).Duration)
			show = func(n int64) string { return Duration{time.Duration(n)}.String() }
		} else {
			v = int64(fv.Interface().(Size))
			for _, u := range c.unitless {
				if u == b.Key {
					return &Error{Path: c.Path, Key: b.Key, Msg: fmt.Sprintf("%s has no unit: write it like %s (a bare number would be bytes)", show(v), b.Example)}
				}
			}
		}
		lo := b.Min
		if c.NoFloors {
			lo = 1
			if b.Off || b.Min == 0 {
				lo = 0
			}
		}
		if v == 0 && b.Off {
			continue
		}
		var msg string
		switch {
		case v < lo && lo == 1:
			msg = fmt.Sprintf("must be positive, e.g. %s (got %s)", b.Example, show(v))
		case v <= 0 && !b.Off && lo > 0:
			msg = fmt.Sprintf("must be positive: at least %s, e.g. %s (got %s)", show(lo), b.Example, show(v))
		case v < lo && b.Off && v > 0:
			msg = fmt.Sprintf("must be 0 (off) or at least %s, e.g. %s (got %s)", show(lo), b.Example, show(v))
		case v < lo:
			msg = fmt.Sprintf("must be at least %s, e.g. %s (got %s)", show(lo), b.Example, show(v))
		case v > b.Max:
			msg = fmt.Sprintf("must be at most %s, e.g. %s (got %s)", show(b.Max), b.Example, show(v))
		default:
			continue
		}
		return &Error{Path: c.Path, Key: b.Key, Msg: msg}
	}
	return nil
}

// findUnitless returns the size keys of Bounds that data gives as a bare
// number (256 or "256"): a size is written with its unit.
func findUnitless(data []byte) []string {
	var raw map[string]any
	if toml.Unmarshal(data, &raw) != nil {
		return nil // the strict decode has said what is wrong
	}
	var keys []string
	var c Config
	for _, b := range Bounds {
		if _, kind, ok := c.field(b.Key); !ok || kind != sizeKey {
			continue
		}
		var v any = raw
		for _, part := range strings.Split(b.Key, ".") {
			m, ok := v.(map[string]any)
			if !ok {
				v = nil
				break
			}
			v = m[part]
		}
		switch x := v.(type) {
		case int64, float64:
			keys = append(keys, b.Key)
		case string:
			if t := strings.TrimSpace(x); t != "" && strings.Trim(t, "0123456789") == "" {
				keys = append(keys, b.Key)
			}
		}
	}
	return keys
}
