// Package demo is the scenario of `tposagent demo`: the agent's whole job
// on one machine with nothing configured — a simulated ÖKC, fake TPOSL and
// Ödüyo servers on loopback, the real agent binary started through the
// shared harness (internal/till), an outage, a kill -9, a reconnect, and an
// account of every record. It links the fakes (device/devicetest,
// agent/tposl/tposltest, agent/oduyo/oduyotest) because the demo needs
// them; nothing else in the shipped binary does.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/device/devicetest"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/internal/till"
)

// The demo's fixed identity of the simulated cash register.
const (
	demoFiscal = "JI20012345"
	demoECR    = "JHWE20000079"
)

// Options configure a demo run.
type Options struct {
	Binary string    // the tposagent executable to run as the agent
	Dir    string    // work dir: config, data dir, the agent's log
	Out    io.Writer // the narration
	// Cards, Updates and Codes size the load: kasa cards, kasa updates
	// (spread over the cards) and special codes enqueued while Ödüyo is down.
	Cards, Updates, Codes int
	// LicenseLine renders a licence for a person (the CLI's own wording).
	LicenseLine func(tposl.License) string
}

// Run plays the scenario in opts.Dir and returns an error if anything
// accepted was lost or a step failed.
func Run(ctx context.Context, opts Options) error {
	if opts.Cards < 1 || opts.Updates < opts.Cards || opts.Codes < 2 {
		return errors.New("demo: need cards ≥ 1, updates ≥ cards, codes ≥ 2")
	}
	if opts.LicenseLine == nil {
		opts.LicenseLine = func(l tposl.License) string { return string(l.State) }
	}
	d := &demo{opts: opts, out: opts.Out, dir: opts.Dir, cards: opts.Cards, updates: opts.Updates, codes: opts.Codes}
	defer d.cleanup()
	return d.run(ctx)
}

type demo struct {
	opts                  Options
	out                   io.Writer
	dir                   string
	cards, updates, codes int
	sim                   *devicetest.Sim
	tposl                 *tposltest.Server
	oduyo                 *oduyotest.Server
	agent                 *till.Till
	agentLog              *os.File
	cfgPath               string
	client                *localapi.Client
	step                  int
	kasaAccepted          []kasaRecord
	codesAccepted         []string // integration ids
	rejected              int
}

type kasaRecord struct {
	card, note string
}

const demoSteps = 7

func (d *demo) say(format string, a ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n[%d/%d] %s\n", d.step, demoSteps, fmt.Sprintf(format, a...))
}

func (d *demo) detail(format string, a ...any) {
	fmt.Fprintf(d.out, "      %s\n", fmt.Sprintf(format, a...))
}

func (d *demo) cleanup() {
	d.stopAgent()
	if d.agentLog != nil {
		d.agentLog.Close()
	}
	if d.oduyo != nil {
		d.oduyo.Close()
	}
	if d.tposl != nil {
		d.tposl.Close()
	}
	if d.sim != nil {
		d.sim.Close()
	}
}

func (d *demo) run(ctx context.Context) error {
	start := time.Now()
	fmt.Fprintf(d.out, "tposagent demo: the whole job on this machine, nothing configured.\nwork dir: %s\n", d.dir)

	// 1. The cash register.
	// On a pseudo-terminal where there are some, else over TCP as an
	// Ethernet ÖKC (Windows).
	port := "none"
	sim, err := devicetest.StartAny(devicetest.Options{FiscalSerial: demoFiscal})
	if err == nil {
		d.sim, port = sim, sim.Port()
		d.say("A simulated ÖKC answers GMP-3 ECHO (CRC-16/ARC, ACK/NAK) on %s with fiscal ID %s in its header", port, demoFiscal)
	} else {
		d.say("No simulated ÖKC here (%v): the agent uses device.port = none and fiscal_serial %s", err, demoFiscal)
	}

	// 2. The servers.
	d.tposl = tposltest.NewServer()
	now := time.Now()
	d.tposl.SetReturn(tposl.Return{
		Status: true, Id: 4711, BayiKodu: "B-034", ProgramKodu: "TPOS", Aktif: 1, LisansModul: "TPOS-MARKET",
		GMP3Status: 1, GMP3ExpDate: now.AddDate(0, 0, 100).Format("2006-01-02"),
		LisansStatus: 0, DemoLisansGun: 30, DemoBasTarih: now.AddDate(0, 0, -10).Format("2006-01-02"),
		OnayFiscalSeriNo: demoFiscal,
	})
	d.oduyo = oduyotest.NewServer()
	d.say("Fake TPOSL at %s and fake Ödüyo at %s", d.tposl.URL(), d.oduyo.URL())

	// 3. The agent, as a real process with its own config and data dir.
	if err := d.writeConfig(port); err != nil {
		return err
	}
	d.say("Starting the agent as a real process: tposagent run --config %s", d.cfgPath)
	if err := d.startAgent(ctx, "started"); err != nil {
		return err
	}
	// The POS knows brand, model and ECR serial from its pairing answer
	// (ECHO does not carry them) and reports them.
	dev, err := d.client.ReportDevice(ctx, localapi.DeviceReport{FiscalSerial: demoFiscal, Brand: "INGENICO", Model: "IWE280", ECRSerial: demoECR})
	if err != nil {
		return fmt.Errorf("report the device identity: %w", err)
	}
	d.detail("the POS reported its paired ÖKC (PUT /v1/device): %s %s, ECR serial %s; conflict=%v", dev.Brand, dev.Model, demoECR, dev.Conflict)
	st, err := d.waitStatus(ctx, "the registration", func(s localapi.Status) bool { return s.License.Source == tposl.SourceServer })
	if err != nil {
		return err
	}
	lic := st.License
	// The report changed POS_SERI_NO: the agent registers again with it.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if reqs := d.tposl.Requests(); len(reqs) > 0 && reqs[len(reqs)-1].PosSeriNo == demoECR {
			break
		}
	}
	if reqs := d.tposl.Requests(); len(reqs) > 0 {
		p := reqs[len(reqs)-1]
		d.detail("registered: YK_FISCAL_SERI_NO=%s POS_SERI_NO=%s PC_NAME=%s FIRMA_ADI=%q", p.YKFiscalSeriNo, p.PosSeriNo, p.PCName, p.FirmaAdi)
	}
	d.detail("licence: %s", d.opts.LicenseLine(lic))
	d.detail("GMP3 module: active=%v, %d days left", lic.GMP3.Active, lic.GMP3.DaysLeft)

	// 4. Offline: the POS keeps working, the agent keeps everything.
	d.oduyo.SetDown(true)
	d.oduyo.Reject("demo-code-refused") // one special code the ERP will refuse
	d.say("Ödüyo goes down. The POS sends %d kasa updates for %d cards and %d special codes", d.updates, d.cards, d.codes)
	if err := d.enqueueAll(ctx); err != nil {
		return err
	}
	// The agent notices the outage on its first send or probe.
	s, err := d.waitStatus(ctx, "the agent to notice the outage", func(s localapi.Status) bool { return !s.Online })
	if err != nil {
		return err
	}
	d.detail("accepted %d records (each 202 only after fsync); %d bad record refused with 400", len(d.kasaAccepted)+len(d.codesAccepted), d.rejected)
	d.detail("outbox: %d pending, %d coalesced (a newer update of the same card replaced them), online=%v", s.Outbox.Pending, s.Outbox.Coalesced, s.Online)
	pendingBefore := s.Outbox.Pending

	// 5. A crash.
	d.say("kill -9 the agent (pid %d), as a power cut or a crash would, and start it again", d.agent.PID())
	if err := d.killAgent(); err != nil {
		return err
	}
	if err := d.startAgent(ctx, "started again"); err != nil {
		return err
	}
	if s, err = d.client.Status(ctx); err != nil {
		return err
	}
	d.detail("after the restart: %d pending (before the kill: %d) — nothing lost", s.Outbox.Pending, pendingBefore)

	// 6. Back online: drain.
	d.oduyo.SetDown(false)
	d.say("Ödüyo is back. The agent notices on its next probe and drains the queue")
	if s, err = d.waitDrain(ctx); err != nil {
		return err
	}

	// 7. The account.
	d.say("Summary (%.1f s)", time.Since(start).Seconds())
	lost := d.summary(s)
	if err := d.stopAgent(); err != nil {
		d.detail("agent stop: %v", err)
	}
	if lost != 0 {
		return fmt.Errorf("demo: %d accepted records were lost", lost)
	}
	return nil
}

func (d *demo) writeConfig(port string) error {
	tok := make([]byte, 16)
	rand.Read(tok)
	c := till.Config(filepath.Join(d.dir, "data"), till.Servers{
		TPOSLURL: d.tposl.URL(), TPOSLUser: "demo-kasa", TPOSLPassword: "demo-tposl-Şifre-91",
		OduyoURL: d.oduyo.URL(), OduyoUser: d.oduyo.Username, OduyoAPIKey: d.oduyo.APIKey, OduyoPassword: d.oduyo.Password,
		Token: hex.EncodeToString(tok),
	})
	d.tposl.SetCredentials(c.TPOSL.Username, c.TPOSL.Password.Reveal())
	c.Store.PeriodYear, c.Store.TPOSVersion, c.Store.TPOSVersionSeq = time.Now().Year(), "8.4.2", "842"
	c.Device.Port = port
	c.Device.FiscalSerial = ""
	if port == "none" {
		c.Device.FiscalSerial = demoFiscal
	}
	c.Outbox.RetryMax = config.Duration{Duration: 2 * time.Second}
	c.Outbox.ReconnectJitter = config.Duration{Duration: time.Second}
	d.cfgPath = filepath.Join(d.dir, "config.toml")
	var err error
	d.agentLog, err = os.OpenFile(filepath.Join(d.dir, "agent-stderr.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("demo: agent log: %w", err)
	}
	d.agent, err = till.New(&c, till.Options{Binary: d.opts.Binary, ConfigPath: d.cfgPath, Env: os.Environ(), Log: d.agentLog,
		Child: true}) // a plain process: the demo registers no service on a till
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

func (d *demo) startAgent(ctx context.Context, what string) error {
	// The agent must be up in well under a second; 10 s is for a loaded machine.
	took, err := d.agent.Start(ctx, 10*time.Second)
	if err != nil {
		return fmt.Errorf("demo: %w (see %s)", err, d.agentLog.Name())
	}
	d.client = d.agent.API()
	d.detail("%s: pid %d, local API at %s answered after %d ms", what, d.agent.PID(), d.client.BaseURL, took.Milliseconds())
	return nil
}

func (d *demo) killAgent() error {
	if d.agent != nil {
		d.agent.Kill()
	}
	return nil
}

// stopAgent asks the agent to stop (SIGINT, or a kill where signals are
// not available) and waits.
func (d *demo) stopAgent() error {
	if d.agent == nil {
		return nil
	}
	_, err := d.agent.Stop(6 * time.Second)
	if errors.Is(err, till.ErrCannotInterrupt) {
		return nil
	}
	return err
}

// waitStatus polls the status until cond holds (15 s at most).
func (d *demo) waitStatus(ctx context.Context, what string, cond func(localapi.Status) bool) (localapi.Status, error) {
	s, err := d.agent.WaitStatus(ctx, 15*time.Second, 50*time.Millisecond, cond)
	if err != nil {
		return s, fmt.Errorf("demo: waiting for %s: %w; see %s", what, err, d.agentLog.Name())
	}
	return s, nil
}

func (d *demo) enqueueAll(ctx context.Context) error {
	t0 := time.Now()
	for i := 0; i < d.updates; i++ {
		card := fmt.Sprintf("%d", 100+i%d.cards)
		note := fmt.Sprintf("demo update %d", i+1)
		col := map[string]any{
			"integration_id": card, "status": "1", "key1": "K" + card, "note": note,
			"price": fmt.Sprintf("%d,%02d", 100+i, i%100), "balance": fmt.Sprintf("1.%03d,50", i),
			"description": "MERKEZ KASA — Şişli", "kasafisi_updated_in": time.Now().Format("2006-01-02 15:04:05"),
		}
		if _, err := d.post(ctx, "/v1/kasa", col); err != nil {
			return err
		}
		d.kasaAccepted = append(d.kasaAccepted, kasaRecord{card: card, note: note})
	}
	for i := 0; i < d.codes; i++ {
		id := fmt.Sprintf("demo-code-%03d", i+1)
		if i == d.codes-1 {
			id = "demo-code-refused"
		}
		col := map[string]any{"integration_id": id, "code": fmt.Sprintf("İNDİRİM%d", i+1), "status": "1", "typecode": "26", "description": "Özel kod ğüşıöç"}
		if _, err := d.post(ctx, "/v1/special-codes", col); err != nil {
			return err
		}
		d.codesAccepted = append(d.codesAccepted, id)
	}
	// One bad record: refused at the door, never queued.
	_, err := d.post(ctx, "/v1/kasa", map[string]any{"integration_id": "100", "price": "on iki lira"})
	var ae *localapi.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 {
		return fmt.Errorf("demo: a bad record was not refused with 400: %v", err)
	}
	d.rejected++
	d.detail("bad record refused: %s", ae.Message)
	n := len(d.kasaAccepted) + len(d.codesAccepted)
	d.detail("%d records in %d ms (%.0f/s through the local API)", n, time.Since(t0).Milliseconds(), float64(n)/time.Since(t0).Seconds())
	return nil
}

func (d *demo) post(ctx context.Context, path string, col map[string]any) (localapi.Accepted, error) {
	b, _ := json.Marshal(col)
	return d.client.Enqueue(ctx, path, b)
}

func (d *demo) waitDrain(ctx context.Context) (localapi.Status, error) {
	deadline := time.Now().Add(40 * time.Second)
	var s localapi.Status
	total := -1
	last := ""
	for {
		var err error
		s, err = d.client.Status(ctx)
		if err != nil {
			return s, err
		}
		left := s.Outbox.Pending + s.Outbox.InFlight
		total = max(total, left) // a snapshot may catch an item between states
		line := progress(total-left, total)
		if line != last {
			fmt.Fprintf(d.out, "      %s  online=%v dead=%d\n", line, s.Online, s.Outbox.Dead)
			last = line
		}
		if left == 0 {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("demo: the queue did not drain within 40 s (%d left; last error %q)", left, s.Outbox.LastError)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func progress(done, total int) string {
	const width = 30
	if total <= 0 {
		return fmt.Sprintf("[%s] 0/0 sent", strings.Repeat("#", width))
	}
	done = min(max(done, 0), total)
	n := done * width / total
	return fmt.Sprintf("[%s%s] %d/%d sent", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
}

// summary prints the account of every accepted record and returns how
// many were lost: accepted but neither delivered, superseded by a newer
// delivered update of the same card, nor dead-lettered.
func (d *demo) summary(s localapi.Status) int {
	delivered := d.oduyo.Delivered()
	gotNote := map[string]bool{}
	gotCode := map[string]bool{}
	dups := 0
	for _, del := range delivered {
		if del.Duplicate {
			dups++
		}
		var col map[string]any
		json.Unmarshal(del.Column, &col)
		switch del.Kind {
		case oduyotest.KindKasa:
			if n, ok := col["note"].(string); ok {
				gotNote[n] = true
			}
		case oduyotest.KindSpecialCode:
			gotCode[del.IntegrationID] = true
		}
	}
	dead := map[string]bool{}
	if items, err := d.client.List(context.Background(), "dead", 1000); err == nil {
		for _, it := range items {
			dead[it.Key] = true
		}
	}
	var sent, superseded, deadN, lost int
	for i, r := range d.kasaAccepted {
		switch {
		case gotNote[r.note]:
			sent++
		case laterDelivered(d.kasaAccepted[i+1:], r.card, gotNote):
			superseded++
		default:
			lost++
		}
	}
	for _, id := range d.codesAccepted {
		switch {
		case gotCode[id]:
			sent++
		case dead["special_code:"+id]:
			deadN++
		default:
			lost++
		}
	}
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(name string, v int, note string) { fmt.Fprintf(tw, "      %s\t%d\t  %s\n", name, v, note) }
	row("accepted (202)", len(d.kasaAccepted)+len(d.codesAccepted), "kasa updates and special codes the POS handed over")
	row("refused at the door (400)", d.rejected, "invalid input never enters the queue")
	row("sent", sent, "delivered to Ödüyo and confirmed (status: true)")
	row("coalesced", superseded, "kasa updates replaced by a newer one for the same card")
	row("dead", deadN, "refused by Ödüyo (status: false); see tposagent outbox dead")
	row("duplicates", dups, "re-sent after the crash; the Idempotency-Key lets the server drop them")
	row("lost", lost, "must be 0")
	tw.Flush()
	d.detail("agent counters: enqueued %d, delivered %d, coalesced %d, dead-lettered %d; TPOSL registrations %d; Ödüyo logins %d",
		s.Outbox.Enqueued, s.Outbox.Delivered, s.Outbox.Coalesced, s.Outbox.DeadLettered, d.tposl.Calls(), d.oduyo.Logins())
	return lost
}

func laterDelivered(later []kasaRecord, card string, got map[string]bool) bool {
	for _, r := range later {
		if r.card == card && got[r.note] {
			return true
		}
	}
	return false
}
