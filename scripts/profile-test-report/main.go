// Command profile-test-report reads the JSON reports of `push2 profile test
// -json` (one file per plugin, internal/casetest.Report) and prints each
// plugin's summary, its failing cases with their diffs, and a total. It
// exits 1 if any case failed, any plugin did not run, or a report is
// missing or unreadable (its NAME.stderr, written next to NAME.json by
// scripts/profile-test-all.sh, is shown then).
//
// Usage: go run ./scripts/profile-test-report REPORT.json...
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/push2/push2/internal/casetest"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(files []string, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		fmt.Fprintln(stderr, "profile-test-report: no reports")
		return 1
	}
	passed, failed, broken := 0, 0, 0
	for _, f := range files {
		rep, err := read(f)
		if err != nil {
			broken++
			fmt.Fprintf(stderr, "profile-test-report: %s: %v\n", f, err)
			if b, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".stderr"); err == nil && len(b) > 0 {
				stderr.Write(b)
			}
			continue
		}
		if rep.Error != "" {
			broken++
			fmt.Fprintf(stdout, "%s: did not run: %s\n", rep.Module, rep.Error)
			continue
		}
		for _, r := range rep.Results {
			if !r.Pass {
				fmt.Fprintf(stdout, "--- FAIL: %s: %s (%s)\n    %s\n", rep.Module, r.Name, r.File, strings.ReplaceAll(r.Diff, "\n", "\n    "))
			}
		}
		fmt.Fprintf(stdout, "%s: %d passed, %d failed\n", rep.Module, rep.Passed, rep.Failed)
		if rep.Passed+rep.Failed == 0 {
			broken++
		}
		passed += rep.Passed
		failed += rep.Failed
	}
	fmt.Fprintf(stdout, "plugins: %d passed, %d failed", passed, failed)
	if broken > 0 {
		fmt.Fprintf(stdout, ", %d did not run", broken)
	}
	fmt.Fprintln(stdout)
	if failed > 0 || broken > 0 {
		return 1
	}
	return 0
}

func read(file string) (*casetest.Report, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var rep casetest.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("not a push2 profile test -json report: %w", err)
	}
	if rep.Module == "" {
		return nil, fmt.Errorf("not a push2 profile test -json report: no module")
	}
	return &rep, nil
}
