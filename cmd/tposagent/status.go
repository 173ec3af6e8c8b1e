package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
)

func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", "status [--json]",
		"  tposagent status\n  tposagent status --json | jq .outbox\n")
	addConfigFlag(fs, e)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := apiClient(e)
	if err != nil {
		return err
	}
	s, err := c.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, s)
	}
	printStatus(e.stdout, s, time.Now())
	return nil
}

func printStatus(w io.Writer, s localapi.Status, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	reg := "not registered"
	if s.Registered {
		reg = "registered"
	}
	reg += " (last " + fmtTime(s.LastRegistration) + ")"
	if s.LastRegistrationError != "" {
		reg += "; last attempt failed: " + s.LastRegistrationError
	}
	fmt.Fprintf(tw, "Registration\t%s\n", reg)
	fmt.Fprintf(tw, "Licence\t%s\n", licenseLine(s.License))
	g := s.License.GMP3
	if g.Active || g.ExpDate != "" {
		state := "inactive"
		if g.Active {
			state = "active"
		}
		fmt.Fprintf(tw, "GMP3 module\t%s, %d days left\n", state, g.DaysLeft)
	}
	d := s.Device
	dev := "no fiscal identity known"
	if d.FiscalSerial != "" {
		dev = fmt.Sprintf("%s from %s", d.FiscalSerial, d.Source)
		if d.Port != "" && d.Source != "config" && d.Source != "pos" {
			dev += " on " + d.Port
		}
		if d.Protocol != "" {
			dev += " (" + d.Protocol + ")"
		}
		if d.Brand != "" {
			dev += fmt.Sprintf(" (%s %s)", d.Brand, d.Model)
		}
		dev += ", " + fmtTime(d.ReadAt)
	}
	if d.Conflict {
		var parts []string
		for k, v := range d.Conflicting {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		dev += "; CONFLICT: " + strings.Join(parts, ", ")
	}
	if d.Error != "" {
		dev += "; device: " + d.Error
	}
	if d.StuckCalls > 0 {
		dev += fmt.Sprintf("; %d port driver call(s) stuck (replug the USB cable)", d.StuckCalls)
	}
	fmt.Fprintf(tw, "Device\t%s\n", dev)
	o := s.Outbox
	fmt.Fprintf(tw, "Outbox\t%d pending, %d in flight, %d dead; oldest %s; file %s\n",
		o.Pending, o.InFlight, o.Dead, time.Duration(o.OldestPendingAgeS)*time.Second, humanBytes(uint64(o.Bytes)))
	fmt.Fprintf(tw, "Totals\t%d accepted, %d delivered, %d coalesced, %d dead-lettered\n", o.Enqueued, o.Delivered, o.Coalesced, o.DeadLettered)
	conn := "offline"
	if s.Online {
		conn = "online"
	}
	conn += "; last delivery " + fmtTime(s.LastFlush)
	if o.PausedUntil != nil && o.PausedUntil.After(now) {
		conn += "; paused by the server until " + fmtTime(o.PausedUntil)
	}
	if o.LastError != "" {
		conn += "; last error: " + o.LastError
	}
	fmt.Fprintf(tw, "Ödüyo\t%s\n", conn)
	fmt.Fprintf(tw, "Agent\t%s, up since %s\n", s.Version, fmtTime(&s.StartedAt))
	for _, warn := range s.Warnings {
		fmt.Fprintf(tw, "Warning\t%s\n", warn)
	}
	tw.Flush()
}
