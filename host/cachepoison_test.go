package host

import (
	"context"
	"testing"
	"time"
)

// TestCacheKeepsDeadlines: machine code cached by a host without the
// interruption checks (Config.NoInterrupt, as the benchmarks use) must not be
// reused by a host that relies on them, or a looping guest could never be
// stopped after a restart. wazero keys its cache on that flag; this test
// keeps it so.
func TestCacheKeepsDeadlines(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	h1 := newHost(t, Config{CacheDir: dir, NoInterrupt: true})
	if _, err := h1.Load(ctx, "h", hostile("hostile-v1.wasm")); err != nil {
		t.Fatal(err)
	}
	h1.Close(ctx)
	h2 := newHost(t, Config{CacheDir: dir, CallTimeout: 100 * time.Millisecond, Logger: testLogger(t)})
	m, err := h2.Load(ctx, "h", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- callHostile(ctx, m, "match", "loop") }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the loop returned")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a loop compiled from the shared cache could not be stopped")
	}
}
