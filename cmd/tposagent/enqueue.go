package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tposagent/tposagent/agent/localapi"
)

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
