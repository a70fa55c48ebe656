package casetest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/push2/push2/host"
	"github.com/push2/push2/profiles/webpush"
)

// The test binary builds every plugin once with plugins/build.sh (a no-op
// when plugins/build is up to date, as after `make plugins`). A missing
// toolchain fails the tests; it never skips them.
var (
	repoRoot string
	cacheDir string            // one compilation cache for the whole run
	plugins  map[string]string // "vip-go" → .wasm path
)

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "casetest: setup failed:", err)
		os.Exit(1)
	}
	if code == 0 {
		code = m.Run()
	}
	os.RemoveAll(cacheDir)
	os.Exit(code)
}

func setup() (int, error) {
	wd, err := os.Getwd()
	if err != nil {
		return 1, err
	}
	repoRoot = filepath.Join(wd, "..", "..")
	cmd := exec.Command("bash", filepath.Join(repoRoot, "plugins", "build.sh"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return 1, fmt.Errorf("plugins/build.sh: %w", err)
	}
	plugins = map[string]string{}
	dirs, _ := filepath.Glob(filepath.Join(repoRoot, "plugins", "*", "cases"))
	for _, d := range dirs {
		name := filepath.Base(filepath.Dir(d))
		p := filepath.Join(repoRoot, "plugins", "build", name+".wasm")
		if _, err := os.Stat(p); err != nil {
			return 1, fmt.Errorf("plugin %s was not built: %w", name, err)
		}
		plugins[name] = p
	}
	if len(plugins) == 0 {
		return 1, fmt.Errorf("no plugins under %s", filepath.Join(repoRoot, "plugins"))
	}
	if cacheDir, err = os.MkdirTemp("", "push2-casetest-cache-"); err != nil {
		return 1, err
	}
	return 0, nil
}

func pluginNames() []string {
	var out []string
	for n := range plugins {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// testWriter sends logs to t.Log, so a failing test shows what the host
// said.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testConfig(t testing.TB) host.Config {
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return host.Config{CacheDir: cacheDir, Logger: log, Crypto: webpush.NewHostCrypto()}
}

func newHost(t testing.TB) *host.Host {
	t.Helper()
	h, err := host.New(context.Background(), testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}
