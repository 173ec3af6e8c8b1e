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
	"github.com/tposagent/tposagent/internal/i18n"
)

func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "status", "status [--json]",
		"  tposagent status\n  tposagent status --json | jq .outbox\n")
	addConfigFlag(fs, e)
	addLangFlag(fs, e)
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
	forTerminal(&s, cliSecrets(e))
	if *asJSON {
		return printJSON(e.stdout, s)
	}
	printStatus(e.stdout, s, time.Now(), e.language())
	return nil
}

func printStatus(w io.Writer, s localapi.Status, now time.Time, l i18n.Lang) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	when := func(t *time.Time) string {
		if l != i18n.TR {
			return fmtTime(t)
		}
		if t == nil || t.IsZero() {
			return "hiç"
		}
		return l.Time(*t)
	}
	reg := l.T("not registered", "kayıtlı değil")
	if s.Registered {
		reg = l.T("registered", "kayıtlı")
	}
	reg += l.F(" (last %s)", " (son: %s)", when(s.LastRegistration))
	if s.LastRegistrationError != "" {
		reg += l.F("; last attempt failed: %s", "; son deneme başarısız: %s", s.LastRegistrationError)
	}
	fmt.Fprintf(tw, "%s\t%s\n", l.T("Registration", "Kayıt"), reg)
	fmt.Fprintf(tw, "%s\t%s\n", l.T("Licence", "Lisans"), licenseText(s.License, l))
	g := s.License.GMP3
	if g.Active || g.ExpDate != "" {
		state := l.T("inactive", "etkin değil")
		if g.Active {
			state = l.T("active", "etkin")
		}
		fmt.Fprintf(tw, "%s\t%s, %s\n", l.T("GMP3 module", "GMP3 modülü"), state, l.F("%s left", "%s kaldı", l.Days(g.DaysLeft)))
	}
	d := s.Device
	dev := l.T("no fiscal identity known", "mali kimlik bilinmiyor")
	if d.FiscalSerial != "" {
		src := d.Source
		if l == i18n.TR {
			src = l.Source(d.Source)
		}
		dev = l.F("%s from %s", "%s (%s)", d.FiscalSerial, src)
		if p := d.Sources["pos"].Port; d.Source == "pos" && p != "" {
			dev += l.F(" on %s", ", port %s", p)
		} else if d.Port != "" && d.Source != "config" && d.Source != "pos" {
			dev += l.F(" on %s", ", port %s", d.Port)
		}
		if d.Protocol != "" {
			dev += " (" + d.Protocol + ")"
		}
		if d.Brand != "" {
			dev += fmt.Sprintf(" (%s %s)", d.Brand, d.Model)
		}
		dev += ", " + when(d.ReadAt)
	}
	if d.Conflict {
		var parts []string
		for k, v := range d.Conflicting {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		dev += l.T("; CONFLICT: ", "; UYUŞMAZLIK: ") + strings.Join(parts, ", ")
	}
	if d.Error != "" {
		dev += l.F("; device: %s", "; cihaz: %s", d.Error)
		if d.ErrorSince != nil {
			dev += l.F(" (since %s)", " (%s tarihinden beri)", when(d.ErrorSince))
		}
	}
	if d.NotOpened != "" {
		dev += l.T("; the device is not opened (fresh POS report)", "; cihaz açılmıyor (güncel POS bildirimi)")
	}
	if d.StuckCalls > 0 {
		dev += l.F("; %d port driver call(s) stuck (replug the USB cable)", "; %d port sürücüsü çağrısı takıldı (USB kablosunu çıkarıp takın)", d.StuckCalls)
	}
	fmt.Fprintf(tw, "%s\t%s\n", l.T("Device", "Cihaz"), dev)
	o := s.Outbox
	oldest := (time.Duration(o.OldestPendingAgeS) * time.Second).String()
	if l == i18n.TR {
		oldest = l.Duration(time.Duration(o.OldestPendingAgeS) * time.Second)
	}
	fmt.Fprintf(tw, "%s\t%s\n", l.T("Outbox", "Kuyruk"), l.F("%d pending, %d in flight, %d dead; oldest %s; file %s",
		"%d bekliyor, %d gönderiliyor, %d reddedildi; en eskisi %s; dosya %s",
		o.Pending, o.InFlight, o.Dead, oldest, humanBytes(uint64(o.Bytes))))
	fmt.Fprintf(tw, "%s\t%s\n", l.T("Totals", "Toplam"), l.F("%d accepted, %d delivered, %d coalesced, %d dead-lettered",
		"%d kabul, %d teslim, %d birleştirildi, %d reddedildi", o.Enqueued, o.Delivered, o.Coalesced, o.DeadLettered))
	if b := o.Bookkeeping; b != nil {
		fmt.Fprintf(tw, "%s\t%s\n", l.T("Bookkeeping", "Defter"), l.F(
			"%d card aliases (%s), %d delivered marks (%s), %d idempotency keys (%s), %d dead letters (%s)",
			"%d kart adı (%s), %d teslim işareti (%s), %d tekrar anahtarı (%s), %d reddedilen kayıt (%s)",
			b.Aliases.Count, humanBytes(uint64(b.Aliases.Bytes)), b.DeliveredMarks.Count, humanBytes(uint64(b.DeliveredMarks.Bytes)),
			b.IdempotencyKeys.Count, humanBytes(uint64(b.IdempotencyKeys.Bytes)), b.DeadLetters.Count, humanBytes(uint64(b.DeadLetters.Bytes))))
	}
	if q := o.Enqueue; q.FailingSince != nil {
		fmt.Fprintf(tw, "%s\t%s\n", l.T("Enqueue", "Kayıt alma"), l.F("FAILING since %s (%d failed): %s", "%s tarihinden beri BAŞARISIZ (%d başarısız): %s",
			when(q.FailingSince), q.Failures, q.LastError))
	} else if q.Failures > 0 {
		fmt.Fprintf(tw, "%s\t%s\n", l.T("Enqueue", "Kayıt alma"), l.F("working; %d failed earlier, the last at %s: %s", "çalışıyor; önceden %d başarısız, sonuncusu %s: %s",
			q.Failures, when(q.LastErrorAt), q.LastError))
	}
	conn := l.T("offline", "çevrimdışı")
	if s.Online {
		conn = l.T("online", "çevrimiçi")
	}
	if s.OnlineSince != nil {
		conn += l.F(" since %s", " (%s tarihinden beri)", when(s.OnlineSince))
	}
	conn += l.F("; last delivery %s", "; son teslim: %s", when(s.LastFlush))
	if o.PausedUntil != nil && o.PausedUntil.After(now) {
		conn += l.F("; paused by the server until %s", "; sunucu %s tarihine kadar durdurdu", when(o.PausedUntil))
	}
	if o.LastError != "" {
		conn += l.F("; last error: %s", "; son hata: %s", o.LastError)
	}
	fmt.Fprintf(tw, "Ödüyo\t%s\n", conn)
	fmt.Fprintf(tw, "%s\t%s\n", l.T("Agent", "Ajan"), l.F("%s, up since %s", "%s, %s tarihinden beri çalışıyor", s.Version, when(&s.StartedAt)))
	for _, warn := range s.Warnings {
		fmt.Fprintf(tw, "%s\t%s\n", l.T("Warning", "Uyarı"), l.Warning(warn))
	}
	tw.Flush()
}
