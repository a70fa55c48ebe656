package casetest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/push2/push2/host"
	"github.com/push2/push2/internal/testplugins"
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
	if plugins, err = testplugins.Build(repoRoot); err != nil {
		return 1, err
	}
	if cacheDir, err = os.MkdirTemp("", "push2-casetest-cache-"); err != nil {
		return 1, err
	}
	return 0, nil
}

func pluginNames() []string { return testplugins.Names(plugins) }

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
