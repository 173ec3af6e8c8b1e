package main

import (
	"context"
	"fmt"
	"os"

	"github.com/tposagent/tposagent/internal/demo"
)

func cmdDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "demo [--dir DIR] [--keep] [--cards N] [--updates N] [--codes N]",
		"  tposagent demo                  # about 15 seconds, cleans up after itself\n"+
			"  tposagent demo --keep           # keep the work dir (config, logs, outbox file) to look at\n")
	dir := fs.String("dir", "", "work dir (default: a new temporary dir)")
	keep := fs.Bool("keep", false, "keep the work dir afterwards")
	cards := fs.Int("cards", 12, "kasa cards the POS updates")
	updates := fs.Int("updates", 120, "kasa updates enqueued while Ödüyo is down (spread over the cards)")
	codes := fs.Int("codes", 30, "special codes enqueued while Ödüyo is down")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cards < 1 || *updates < *cards || *codes < 2 {
		return usageErrorf("demo: need --cards ≥ 1, --updates ≥ --cards, --codes ≥ 2")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("demo: find own binary: %w", err)
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "tposagent-demo-")
		if err != nil {
			return fmt.Errorf("demo: work dir: %w", err)
		}
		*dir = tmp
		if !*keep {
			defer os.RemoveAll(tmp)
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("demo: work dir: %w", err)
	}
	return demo.Run(ctx, demo.Options{
		Binary: self, Dir: *dir, Out: e.stdout,
		Cards: *cards, Updates: *updates, Codes: *codes,
		LicenseLine: licenseLine,
	})
}
