package host

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/push2/push2/internal/testplugins"
	"github.com/push2/push2/profiles/webpush"
)

// The test binary builds every plugin once, with plugins/build.sh (which
// installs missing toolchains), and the hostile fixtures of testdata/hostile
// with the same clang. A missing toolchain fails the tests; it never skips
// them.
var (
	repoRoot   string
	pluginsOut string            // plugins/build
	hostileOut string            // compiled testdata/hostile modules
	cacheDir   string            // one compilation cache for the whole run
	plugins    map[string]string // "vip-go" → .wasm path
)

// childEnv names the environment variable that makes the test binary a
// child of runChild: it holds the parent's hostile and cache directories,
// so the child builds nothing.
const childEnv = "PUSH2_HOST_TEST_CHILD"

func TestMain(m *testing.M) {
	if dirs := os.Getenv(childEnv); dirs != "" {
		wd, _ := os.Getwd()
		repoRoot = filepath.Dir(wd)
		hostileOut, cacheDir, _ = strings.Cut(dirs, string(os.PathListSeparator))
		os.Exit(m.Run())
	}
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "host tests: setup failed:", err)
		os.Exit(1)
	}
	if code == 0 {
		code = m.Run()
	}
	os.RemoveAll(cacheDir)
	os.RemoveAll(hostileOut)
	os.Exit(code)
}

func setup() (int, error) {
	wd, err := os.Getwd()
	if err != nil {
		return 1, err
	}
	repoRoot = filepath.Dir(wd)
	pluginsOut = filepath.Join(repoRoot, "plugins", "build")
	if plugins, err = testplugins.Build(repoRoot); err != nil {
		return 1, err
	}
	if cacheDir, err = os.MkdirTemp("", "push2-wazero-cache-"); err != nil {
		return 1, err
	}
	if hostileOut, err = os.MkdirTemp("", "push2-hostile-"); err != nil {
		return 1, err
	}
	if err := buildHostile(); err != nil {
		return 1, err
	}
	return 0, nil
}

// cflags are plugins/build.sh's C flags.
var cflags = []string{"--target=wasm32", "-O2", "-ffreestanding", "-nostdlib", "-mbulk-memory", "-Wall", "-Werror",
	"-Wl,--no-entry", "-Wl,-z,stack-size=65536", "-Wl,--strip-all"}

// clang compiles src (a testdata file) with extra flags into hostileOut/out.
func clang(src, out string, extra ...string) error {
	args := append(append([]string{}, cflags...), "-I", filepath.Join(repoRoot, "sdk", "c"))
	args = append(args, extra...)
	args = append(args, "-o", filepath.Join(hostileOut, out), src)
	b, err := exec.Command("clang", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("clang %s: %v\n%s", src, err, b)
	}
	return nil
}

func hostile(name string) []byte {
	b, err := os.ReadFile(filepath.Join(hostileOut, name))
	if err != nil {
		panic(err)
	}
	return b
}

func pluginNames() []string { return testplugins.Names(plugins) }

func readPlugin(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(plugins[name])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLogger sends logs to t.Log, so a failing test shows what the host
// said.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testConfig(t testing.TB) Config {
	return Config{CacheDir: cacheDir, Logger: testLogger(t), Crypto: webpush.NewHostCrypto()}
}

func newHost(t testing.TB, cfg Config) *Host {
	t.Helper()
	h, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

// runChild runs the test named name in a fresh process of the test binary
// and fails t if it fails there. Memory measurements run there: this
// process's RSS carries whatever earlier tests left.
func runChild(t *testing.T, name string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+hostileOut+string(os.PathListSeparator)+cacheDir)
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", name, out)
	if err != nil {
		t.Fatalf("%s failed: %v", name, err)
	}
}

// inChild reports whether the test runs as runChild's child. A measuring
// test starts with
//
//	if !inChild() {
//		runChild(t, t.Name())
//		return
//	}
func inChild() bool { return os.Getenv(childEnv) != "" }
