package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/internal/textsafe"
)

func cmdOutbox(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "outbox", "outbox list | dead [--limit N] [--json] | retry ID [--force] | drop ID",
		"  tposagent outbox list            # pending records (the first 100; --limit 0 for all)\n"+
			"  tposagent outbox dead            # records the server refused, with the reason\n"+
			"  tposagent outbox retry 42        # send a dead record again; a pending one now (ends a server's pause)\n"+
			"  tposagent outbox retry 42 --force  # even if a newer update of the same kasa card exists;\n"+
			"                                   # a pending record: send it without looking it up first\n"+
			"  tposagent outbox drop 42         # delete a record for good\n"+
			"\n"+
			"retry refuses (exit 1) a dead kasa update when a newer update of the same card\n"+
			"was delivered, is being sent or is pending: sending it could leave the card in\n"+
			"the older state. --force sends it anyway. A pending record waiting for a lookup\n"+
			"that cannot decide (status: undecided) is sent by --force without the lookup.\n")
	addConfigFlag(fs, e)
	force := fs.Bool("force", false, "retry: send the dead record even if a newer update of the same card exists; a pending one without a lookup")
	asJSON := fs.Bool("json", false, "print as JSON")
	limit := fs.Int("limit", 100, "list/dead: at most this many items; 0: all (read page by page)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		fs.Usage()
		return usageErrorf("outbox: say list, dead, retry ID or drop ID")
	}
	// Every usage error before any call to the agent.
	var id uint64
	switch rest[0] {
	case "list", "dead":
		if len(rest) > 1 {
			return usageErrorf("outbox %s: unexpected argument %q", rest[0], rest[1])
		}
	case "retry", "drop":
		if len(rest) != 2 {
			return usageErrorf("outbox %s: give one item ID", rest[0])
		}
		n, err := strconv.ParseUint(rest[1], 10, 64)
		if err != nil || n == 0 {
			return usageErrorf("outbox %s: item ID %q is not a positive whole number (see tposagent outbox list)", rest[0], rest[1])
		}
		id = n
	default:
		return usageErrorf("outbox: unknown action %q (list, dead, retry ID, drop ID)", rest[0])
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
		if *limit < 0 {
			return usageErrorf("outbox %s: --limit must be 0 (all) or more", rest[0])
		}
		return listPages(ctx, c, e.stdout, state, *limit, *asJSON, time.Now(), cliSecrets(e))
	default: // retry, drop
		method, path := "POST", fmt.Sprintf("/v1/outbox/%d/retry", id)
		if *force && rest[0] == "retry" {
			path += "?force=true"
		}
		if rest[0] == "drop" {
			method, path = "DELETE", fmt.Sprintf("/v1/outbox/%d", id)
		}
		if err := c.Do(ctx, method, path, nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "item %d: %s done\n", id, rest[0])
		return nil
	}
}

// listPages prints up to limit items (0: all) page by page as the agent
// answers them (GET /v1/outbox with its cursor): memory does not grow
// with the queue. JSON is one array.
// listPages prints the queue page by page. A dead reason or last error
// quotes Ödüyo's words: no escape sequences, no echoed secret (of any
// server) reach the terminal.
func listPages(ctx context.Context, c *localapi.Client, w io.Writer, state string, limit int, asJSON bool, now time.Time, secrets textsafe.Secrets) error {
	cursor, printed := "", 0
	if asJSON {
		fmt.Fprint(w, "[")
	}
	for {
		want := localapi.MaxListLimit
		if limit > 0 {
			want = min(want, limit-printed)
		}
		items, next, err := c.ListPage(ctx, state, cursor, want)
		forTerminal(&items, secrets)
		if asJSON {
			for _, it := range items {
				b, jerr := json.MarshalIndent(it, "  ", "  ")
				if jerr != nil {
					return jerr
				}
				sep := ","
				if printed == 0 {
					sep = ""
				}
				fmt.Fprintf(w, "%s\n  %s", sep, b)
				printed++
			}
		} else {
			printItems(w, items, state, now, printed == 0)
			printed += len(items)
		}
		if err != nil {
			if asJSON {
				fmt.Fprintln(w, "\n]")
			}
			return err
		}
		if next == "" || (limit > 0 && printed >= limit) {
			if asJSON {
				if printed > 0 {
					fmt.Fprint(w, "\n")
				}
				fmt.Fprintln(w, "]")
			} else if printed == 0 {
				fmt.Fprintf(w, "no %s items\n", state)
			} else if next != "" {
				fmt.Fprintf(w, "(the first %d; --limit 0 lists them all)\n", printed)
			}
			return nil
		}
		cursor = next
	}
}

// printItems prints one page of items as a table (the header with the first).
func printItems(w io.Writer, items []localapi.ItemView, state string, now time.Time, header bool) {
	if len(items) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch {
	case !header:
	case state == "dead":
		fmt.Fprintln(tw, "ID\tKIND\tRECORD\tAGE\tATTEMPTS\tREASON")
	default:
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
