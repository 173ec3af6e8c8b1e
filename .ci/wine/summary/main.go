// Command summary reads `go test -json` on stdin and prints what a CI log
// needs: the output of every failing test or package, each skip with its
// reason, and one line of counts. It exits 1 when anything failed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

func main() {
	out := map[string]*strings.Builder{}
	var fails, skips []string
	counts := map[string]int{}
	failedPkgs := 0
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			fmt.Println(sc.Text()) // build errors and the like
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			b := out[key]
			if b == nil {
				b = &strings.Builder{}
				out[key] = b
			}
			if b.Len() < 64<<10 {
				b.WriteString(e.Output)
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "fail" {
					failedPkgs++
					fails = append(fails, key)
				}
				continue
			}
			counts[e.Action]++
			switch e.Action {
			case "fail":
				fails = append(fails, key)
			case "skip":
				skips = append(skips, key)
			}
		}
	}
	sort.Strings(skips)
	fmt.Println("-- skipped (reasons):")
	for _, k := range skips {
		reason := ""
		if b := out[k]; b != nil {
			for _, l := range strings.Split(b.String(), "\n") {
				l = strings.TrimSpace(l)
				if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
					reason = l
				}
			}
		}
		fmt.Printf("   %s: %s\n", k, reason)
	}
	for _, k := range fails {
		fmt.Printf("-- FAIL %s\n", k)
		if b := out[k]; b != nil {
			fmt.Print(b.String())
		}
	}
	fmt.Printf("RESULT windows-under-wine pass=%d fail=%d skip=%d failed_packages=%d\n",
		counts["pass"], counts["fail"], counts["skip"], failedPkgs)
	if len(fails) > 0 {
		os.Exit(1)
	}
}
