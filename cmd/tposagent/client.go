package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/internal/config"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/agent/tposl"
)

// apiClient reads the config for the local API's address and token. It
// does not validate the rest: a client needs only these two keys.
func apiClient(e *env) (*localapi.Client, error) {
	cfg, err := config.Read(e.configPath)
	if err != nil {
		return nil, err
	}
	if cfg.API.Token == "" {
		return nil, fmt.Errorf("config %s has no api.token (set it, or TPOSAGENT_API_TOKEN)", cfg.Path)
	}
	listen := cfg.API.Listen
	if strings.HasSuffix(listen, ":0") {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, agent.APIAddrFile))
		if err != nil {
			return nil, fmt.Errorf("api.listen has port 0 and %s is unreadable: %w (is the agent running?)", agent.APIAddrFile, err)
		}
		listen = strings.TrimSpace(string(b))
	}
	return &localapi.Client{BaseURL: localapi.BaseURLFor(listen), Token: cfg.API.Token.Reveal()}, nil
}

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

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fmtTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
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
		if d.Port != "" {
			dev += " on " + d.Port
		}
		if d.Brand != "" {
			dev += fmt.Sprintf(" (%s %s)", d.Brand, d.Model)
		}
		dev += ", read " + fmtTime(d.ReadAt)
	}
	if d.Error != "" {
		dev += "; device: " + d.Error
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

// licenseLine is the licence in one line: the state, then the server's
// or the agent's explanation.
func licenseLine(l tposl.License) string {
	line := string(l.State)
	switch {
	case strings.HasPrefix(l.Message, line):
		line = l.Message // "demo licence: 20 days left, …" says the state itself
	case l.Message != "":
		line += ": " + l.Message
	}
	if !l.CheckedAt.IsZero() && l.Source == tposl.SourceServer {
		line += fmt.Sprintf(" (checked %s)", fmtTime(&l.CheckedAt))
	}
	return line
}

func cmdLicense(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "license", "license [--json]",
		"  tposagent license && start-pos.exe     # exit 0 licensed/demo, 3 expired/inactive/mismatch, 4 unknown\n")
	addConfigFlag(fs, e)
	asJSON := fs.Bool("json", false, "print the licence as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := apiClient(e)
	if err != nil {
		return err
	}
	l, err := c.License(ctx)
	if err != nil {
		if errors.Is(err, localapi.ErrNotRunning) {
			fmt.Fprintf(e.stderr, "tposagent: %v\n", err)
			return withCode(exitUnknown)
		}
		return err
	}
	if *asJSON {
		if err := printJSON(e.stdout, l); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(e.stdout, licenseLine(l))
	}
	if code := l.State.ExitCode(); code != exitOK { // 0 licensed/demo, 3 expired/inactive/mismatch, 4 unknown
		return withCode(code)
	}
	return nil
}

// recordFlags defines one string flag per column field; only the flags
// given on the command line end up in the record.
type recordFlags struct {
	file   string
	fields []string
	values map[string]*string
}

func newRecordFlags(fs interface {
	StringVar(*string, string, string, string)
	String(string, string, string) *string
}, fields map[string]string, order []string) *recordFlags {
	r := &recordFlags{values: map[string]*string{}, fields: order}
	fs.StringVar(&r.file, "f", "", "read the column object from a JSON file (- for stdin) instead of flags")
	for _, name := range order {
		r.values[name] = fs.String(strings.ReplaceAll(name, "_", "-"), "", fields[name])
	}
	return r
}

// body returns the JSON column object to post.
func (r *recordFlags) body(e *env, set map[string]bool) ([]byte, error) {
	if r.file != "" {
		if len(set) > 1 {
			return nil, usageErrorf("give the record either with -f or with flags, not both")
		}
		var data []byte
		var err error
		if r.file == "-" {
			data, err = io.ReadAll(io.LimitReader(e.stdin, localapi.MaxBody+1))
		} else {
			data, err = os.ReadFile(r.file)
		}
		if err != nil {
			return nil, fmt.Errorf("read record: %w", err)
		}
		return data, nil
	}
	col := map[string]any{}
	for _, name := range r.fields {
		flagName := strings.ReplaceAll(name, "_", "-")
		if !set[flagName] {
			continue
		}
		v := *r.values[name]
		if name == "id" {
			col[name] = json.Number(v)
			continue
		}
		col[name] = v
	}
	if len(col) == 0 {
		return nil, usageErrorf("no fields given (see --help)")
	}
	return json.Marshal(col)
}

var kasaFields = map[string]string{
	"id": "Ödüyo id of the kasa card (number)", "integration_id": "ERP id of the kasa card",
	"status": `"1" active, "0" passive`, "key1": "kasa card code", "key2": "kasa card code", "note": "note",
	"price": "amount (decimal: 1260.50 or 1.260,50)", "price1": "amount", "price2": "amount",
	"balance": "balance (decimal)", "balance1": "balance", "balance2": "balance", "description": "description",
	"space2": "extra", "space3": "extra", "space4": "extra", "space5": "extra",
	"kasafisi_created_in": "created (2006-01-02 15:04:05)", "kasafisi_updated_in": "updated (2006-01-02 15:04:05)",
}
var kasaOrder = []string{"id", "integration_id", "status", "key1", "key2", "note", "price", "price1", "price2",
	"balance", "balance1", "balance2", "description", "space2", "space3", "space4", "space5", "kasafisi_created_in", "kasafisi_updated_in"}

var specialFields = map[string]string{
	"integration_id": "ERP id of the special code (required)", "code": "the code (required)",
	"status": `"1" active, "0" passive`, "key1": "special code", "key2": "special code", "typecode": "special code type",
	"description": "description", "space1": "extra", "space2": "extra", "space3": "extra", "space4": "extra", "space5": "extra",
	"special_created_in": "created (2006-01-02 15:04:05)", "special_updated_in": "updated (2006-01-02 15:04:05)",
}
var specialOrder = []string{"integration_id", "code", "status", "key1", "key2", "typecode", "description",
	"space1", "space2", "space3", "space4", "space5", "special_created_in", "special_updated_in"}

func cmdKasa(ctx context.Context, e *env, args []string) error {
	return enqueueCommand(ctx, e, args, "kasa", "update", "/v1/kasa", kasaFields, kasaOrder,
		"  tposagent kasa update --integration-id 2 --status 1 --key1 21 --balance 1.260,50 --description \"MERKEZ KASA\"\n"+
			"  tposagent kasa update -f kasa.json\n")
}

func cmdSpecialCode(ctx context.Context, e *env, args []string) error {
	return enqueueCommand(ctx, e, args, "special-code", "create", "/v1/special-codes", specialFields, specialOrder,
		"  tposagent special-code create --integration-id 1111111 --code TESTCODE --status 1 --typecode 26\n"+
			"  echo '{\"integration_id\":\"7\",\"code\":\"İNDİRİM\"}' | tposagent special-code create -f -\n")
}

// enqueueCommand is "NOUN VERB [flags] | -f file.json": it posts one
// record to the local API at path.
func enqueueCommand(ctx context.Context, e *env, args []string, noun, verb, path string, fields map[string]string, order []string, examples string) error {
	name := noun + " " + verb
	if len(args) == 0 || args[0] != verb {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintf(e.stdout, "Usage: tposagent %s [flags] | -f file.json\n\nRun 'tposagent %s --help' for the flags.\n", name, name)
			return nil
		}
		return usageErrorf("usage: tposagent %s [flags] (see tposagent %s --help)", name, name)
	}
	args = args[1:]
	fs := newFlagSet(e, name, name+" [flags] | -f file.json", examples)
	addConfigFlag(fs, e)
	rf := newRecordFlags(fs, fields, order)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	delete(set, "config")
	body, err := rf.body(e, set)
	if err != nil {
		return err
	}
	c, err := apiClient(e)
	if err != nil {
		return err
	}
	acc, err := c.Enqueue(ctx, path, body)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "queued as outbox item %d (record %s)\n", acc.ID, acc.Key)
	return nil
}

func cmdOutbox(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "outbox", "outbox list | dead | retry ID | drop ID",
		"  tposagent outbox list            # pending records\n"+
			"  tposagent outbox dead            # records the server refused, with the reason\n"+
			"  tposagent outbox retry 42        # send a dead record again\n"+
			"  tposagent outbox drop 42         # delete a record for good\n")
	addConfigFlag(fs, e)
	asJSON := fs.Bool("json", false, "print as JSON")
	limit := fs.Int("limit", 100, "at most this many items")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		fs.Usage()
		return usageErrorf("outbox: say list, dead, retry ID or drop ID")
	}
	c, err := apiClient(e)
	if err != nil {
		return err
	}
	switch rest[0] {
	case "list", "dead":
		state := "pending"
		if rest[0] == "dead" {
			state = "dead"
		}
		items, err := c.List(ctx, state, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(e.stdout, items)
		}
		printItems(e.stdout, items, state, time.Now())
		return nil
	case "retry", "drop":
		if len(rest) != 2 {
			return usageErrorf("outbox %s: give one item ID", rest[0])
		}
		method, path := "POST", "/v1/outbox/"+rest[1]+"/retry"
		if rest[0] == "drop" {
			method, path = "DELETE", "/v1/outbox/"+rest[1]
		}
		if err := c.Do(ctx, method, path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "item %s: %s done\n", rest[1], rest[0])
		return nil
	}
	return usageErrorf("outbox: unknown action %q (list, dead, retry ID, drop ID)", rest[0])
}

func printItems(w io.Writer, items []localapi.ItemView, state string, now time.Time) {
	if len(items) == 0 {
		fmt.Fprintf(w, "no %s items\n", state)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if state == "dead" {
		fmt.Fprintln(tw, "ID\tKIND\tRECORD\tAGE\tATTEMPTS\tREASON")
	} else {
		fmt.Fprintln(tw, "ID\tKIND\tRECORD\tAGE\tATTEMPTS\tLAST ERROR")
	}
	for _, it := range items {
		reason := it.LastError
		if state == "dead" {
			reason = it.DeadReason
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", it.ID, it.Kind, it.Key, now.Sub(it.Created).Round(time.Second), it.Attempts, reason)
	}
	tw.Flush()
}

// humanBytes prints a size for a person: 1.5 GiB, 820 MiB, 12 KiB.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v >= 100 {
		return fmt.Sprintf("%.0f %ciB", v, "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[exp])
}
