package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/host"
	"github.com/push2/push2/profiles/webpush"
)

// runProfile is `push2 profile test PLUGIN.wasm [CASES_DIR]`: run a
// plugin's test cases (sdk/ABI.md §13) through a real engine with the
// plugin loaded, as push2d would run it. The cases directory defaults to the
// one shipped with the plugin (host.FindCases).
func runProfile(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "test" {
		fmt.Fprintln(stderr, "usage: push2 profile test PLUGIN.wasm [CASES_DIR]")
		return 2
	}
	fs := flag.NewFlagSet("profile test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("call-timeout", 0, "per-call deadline (default: the host's, 100ms)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprintln(stderr, "usage: push2 profile test PLUGIN.wasm [CASES_DIR]")
		return 2
	}
	wasm, dir := fs.Arg(0), fs.Arg(1)
	if dir == "" {
		d, err := host.FindCases(wasm)
		if err != nil {
			fmt.Fprintf(stderr, "push2 profile test: %v\n", err)
			return 1
		}
		dir = d
	}
	cfg := host.Config{Crypto: webpush.NewHostCrypto(), CallTimeout: *timeout}
	passed, failed, err := host.RunCases(context.Background(), cfg, wasm, dir, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "push2 profile test: %v\n", err)
		return 1
	}
	if failed > 0 || passed == 0 {
		if passed == 0 && failed == 0 {
			fmt.Fprintf(stderr, "push2 profile test: no cases in %s\n", dir)
		}
		return 1
	}
	return 0
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
