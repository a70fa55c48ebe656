package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/host"
	"github.com/push2/push2/internal/casetest"
	"github.com/push2/push2/profiles/webpush"
)

// runProfile is `push2 profile test [-json] PLUGIN.wasm [CASES_DIR]`: run
// a plugin's test cases (sdk/ABI.md §13) through a real engine with the
// plugin loaded, as push2d would run it (internal/casetest). The cases
// directory defaults to the one shipped with the plugin
// (casetest.FindCases). The exit status is 0 only if at least one case ran
// and none failed.
func runProfile(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	const usage = "usage: push2 profile test [-json] [-call-timeout D] PLUGIN.wasm [CASES_DIR]"
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("profile test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("call-timeout", 0, "per-call deadline (default: the host's, as push2d's plugins.call_timeout)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object (casetest.Report) instead of text")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	cfg := host.Config{Crypto: webpush.NewHostCrypto(), CallTimeout: *timeout}
	rep, err := casetest.Run(context.Background(), cfg, fs.Arg(0), fs.Arg(1))
	switch {
	case *asJSON:
		stdout.Write(rep.JSON())
	case err != nil:
		fmt.Fprintf(stderr, "push2 profile test: %v\n", err)
	default:
		writeReport(stdout, rep)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

// writeReport prints a report as text, one line per case in the manner of
// go test, then the module's summary "NAME: N passed, M failed".
func writeReport(w io.Writer, rep *casetest.Report) {
	for _, r := range rep.Results {
		if r.Pass {
			fmt.Fprintf(w, "--- PASS: %s (%s, %s)\n", r.Name, r.File, r.Duration.Round(time.Microsecond))
			continue
		}
		fmt.Fprintf(w, "--- FAIL: %s (%s, %s)\n", r.Name, r.File, r.Duration.Round(time.Microsecond))
		msg := r.Diff
		if r.Detail != "" {
			msg += "\n" + r.Detail
		}
		fmt.Fprintf(w, "    %s\n", strings.ReplaceAll(msg, "\n", "\n    "))
	}
	fmt.Fprintf(w, "%s: %d passed, %d failed\n", rep.Module, rep.Passed, rep.Failed)
}

// loadPlugins loads every .wasm in dir into reg (for simulate).
func loadPlugins(ctx context.Context, dir string, reg *engine.Registry) (func(), error) {
	h, err := host.New(ctx, host.Config{Crypto: webpush.NewHostCrypto()})
	if err != nil {
		return nil, err
	}
	w := host.NewWatcher(h, reg, dir, host.WatcherConfig{})
	if err := w.Scan(ctx); err != nil {
		w.Close()
		h.Close(ctx)
		return nil, err
	}
	if len(w.Modules()) == 0 {
		w.Close()
		h.Close(ctx)
		return nil, fmt.Errorf("no usable .wasm module in %s", dir)
	}
	return func() { w.Close(); h.Close(ctx) }, nil
}
