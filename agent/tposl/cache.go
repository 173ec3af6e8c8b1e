package tposl

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tposagent/tposagent/internal/atomicfile"
)

// ErrCacheCorrupt is wrapped by Cache.Load when the file cannot be read as
// a record.
var ErrCacheCorrupt = errors.New("licence cache is corrupt")

// Cache keeps the last good answer of the server in one JSON file (for
// example data_dir/license.json), written atomically: a temporary file in
// the same directory, fsync, rename, fsync of the directory. A crash
// leaves either the old or the new record, never a torn one. The file
// holds no secret. Save and Load may run concurrently with each other;
// concurrent Saves leave one of the records.
type Cache struct {
	Path string
}

// Record is what Cache stores.
type Record struct {
	Return       Return    `json:"return"`
	FiscalSerial string    `json:"fiscal_serial"` // ours, when the server answered
	CheckedAt    time.Time `json:"checked_at"`    // when the server answered
}

type cacheFile struct {
	Version int `json:"version"`
	Record
}

// Save writes r atomically, creating the directory (0700) if needed; the
// file is 0600.
func (c Cache) Save(r Record) error {
	if c.Path == "" {
		return errors.New("save licence cache: no path")
	}
	b, err := json.MarshalIndent(cacheFile{Version: 1, Record: r}, "", "  ")
	if err != nil {
		return fmt.Errorf("save licence cache: %w", err)
	}
	if err := atomicfile.Write(c.Path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save licence cache: %w", err)
	}
	return nil
}

// Load reads the record. When there is none, the error wraps
// os.ErrNotExist; an unreadable file wraps ErrCacheCorrupt.
func (c Cache) Load() (Record, error) {
	b, err := atomicfile.ReadFile(c.Path) // retries the moment a Save renames over it (Windows)
	if err != nil {
		return Record{}, fmt.Errorf("load licence cache: %w", err)
	}
	var cf cacheFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return Record{}, fmt.Errorf("load licence cache %s: %w: %v", c.Path, ErrCacheCorrupt, err)
	}
	if cf.Version != 1 {
		return Record{}, fmt.Errorf("load licence cache %s: version %d: %w", c.Path, cf.Version, ErrCacheCorrupt)
	}
	return cf.Record, nil
}

// Effective re-evaluates a cached answer at now, so that a demo keeps
// counting down while offline. Source is "cache" and CheckedAt the time of
// the answer. It is unknown when there is no record, when the record is
// older than grace (<= 0: DefaultGrace), when it lies more than a day in
// the future (the clock was turned back), or when it was given for another
// fiscal serial than ours.
func Effective(rec Record, fiscalSerial string, now time.Time, grace time.Duration) License {
	if grace <= 0 {
		grace = DefaultGrace
	}
	if rec.CheckedAt.IsZero() {
		return Unknown("the licence server has not answered yet and there is no saved answer")
	}
	decay := func(why string) License {
		l := Unknown(why)
		l.Source, l.CheckedAt = SourceCache, rec.CheckedAt
		l.FiscalSerial = strings.TrimSpace(fiscalSerial)
		return l
	}
	age := now.Sub(rec.CheckedAt)
	switch {
	case age > grace:
		return decay(fmt.Sprintf("the licence server has not answered since %s (%s ago, longer than the grace period of %s)",
			rec.CheckedAt.Format(TimeLayout), roundAge(age), roundAge(grace)))
	case age < -24*time.Hour:
		return decay(fmt.Sprintf("the saved licence answer is dated %s, in the future: the clock was turned back", rec.CheckedAt.Format(TimeLayout)))
	}
	ours, theirs := strings.TrimSpace(fiscalSerial), strings.TrimSpace(rec.FiscalSerial)
	if ours != "" && theirs != "" && !strings.EqualFold(ours, theirs) {
		return decay(fmt.Sprintf("the saved licence answer is for fiscal serial %s, this till's device is %s", theirs, ours))
	}
	l := Evaluate(rec.Return, fiscalSerial, now)
	l.Source, l.CheckedAt = SourceCache, rec.CheckedAt
	l.Message += fmt.Sprintf(" (saved answer of %s)", rec.CheckedAt.Format(TimeLayout))
	return l
}

func roundAge(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Minute).String()
}
