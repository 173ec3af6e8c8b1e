package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/internal/i18n"
)

// TestStatusSaysWhatFails: the human status names failing enqueues, the
// server's pause and the device's error, each with since when.
func TestStatusSaysWhatFails(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.Local)
	since, paused, devSince := now.Add(-5*time.Minute), now.Add(10*time.Minute), now.Add(-time.Hour)
	s := localapi.Status{
		License: tposl.Unknown("x"),
		Device:  localapi.Device{FiscalSerial: "JI20012345", Source: "cache", Error: "open COM3: access denied", ErrorSince: &devSince},
		Outbox: localapi.Outbox{PausedUntil: &paused, Enqueue: localapi.Enqueues{
			Failures: 7, LastError: "no space left on device", LastErrorAt: &now, FailingSince: &since}},
	}
	var b bytes.Buffer
	printStatus(&b, s, now, i18n.EN)
	out := b.String()
	for _, want := range []string{
		"FAILING since 2026-11-27 09:55:00 (7 failed): no space left on device",
		"paused by the server until 2026-11-27 10:10:00",
		"device: open COM3: access denied (since 2026-11-27 09:00:00)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	s.Outbox.Enqueue.FailingSince = nil
	b.Reset()
	printStatus(&b, s, now, i18n.EN)
	if out := b.String(); strings.Contains(out, "FAILING") || !strings.Contains(out, "working; 7 failed earlier") {
		t.Errorf("after recovery:\n%s", out)
	}
}
