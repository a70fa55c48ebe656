package host

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests of the sandbox limits that issue 11 found broken: recursion
// escaping the deadline and the memory cap (sdk/ABI.md §11 "Call stack"),
// memory kept after a module goes, slow failures and flapping modules. The
// memory tests measure in a child process (runChild), whose RSS holds only
// what the test did.

// procStatusKiB returns a field of /proc/self/status in KiB: "VmRSS" (what
// is resident now) or "VmHWM" (the peak).
func procStatusKiB(t *testing.T, field string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// settledRSS is the RSS in MiB once the Go heap has given back what it can.
func settledRSS(t *testing.T) float64 {
	runtime.GC()
	debug.FreeOSMemory()
	return float64(procStatusKiB(t, "VmRSS")) / 1024
}

// neverQuarantine makes a host keep a module however often it fails.
func neverQuarantine(cfg Config) Config {
	cfg.QuarantineAfter, cfg.QuarantineWindow, cfg.QuarantineRate = 1000, 64, 1
	return cfg
}

// TestRecursionStopsAtTheDeadline: a tree recursion without a loop (seconds
// of work, and no loop back-edge where wazero checks the deadline) is
// stopped at the call deadline like a loop. (The deadline is longer than
// the default so that a loaded machine's scheduling delays stay well within
// the factor of two.)
func TestRecursionStopsAtTheDeadline(t *testing.T) {
	const deadline = 500 * time.Millisecond
	h := newHost(t, neverQuarantine(Config{CacheDir: cacheDir, Logger: testLogger(t), CallTimeout: deadline}))
	m, err := h.Load(context.Background(), "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		start := time.Now()
		err := callHostile(context.Background(), m, "match", "fib")
		took := time.Since(start)
		var ce *CallError
		if !errors.As(err, &ce) || !strings.HasPrefix(ce.Reason, "timeout") {
			t.Fatalf("fib(42): %v after %s, want a timeout", err, took)
		}
		if took > 2*deadline {
			t.Fatalf("fib(42) stopped after %s, over twice the %s deadline", took, deadline)
		}
		t.Logf("stopped after %s", took.Round(time.Millisecond))
	}
}

// TestDeepRecursionAllowed: the default stack budget leaves room for a
// recursion a real profile may do (5,000 levels).
func TestDeepRecursionAllowed(t *testing.T) {
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t)})
	m, err := h.Load(context.Background(), "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := callHostile(context.Background(), m, "match", "deep"); err != nil {
			t.Fatal(err)
		}
	}
	if s := m.Stats(); s.Failures != 0 || s.Instances != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestRecursionBounded: a guest recursing without end, four calls at once
// for three rounds, fails each call with "stack overflow" within twice the
// deadline, and the process's peak RSS stays within 32 MiB of where it
// started. (Before the stack budget each call took 250–700 ms and the peak
// was 790 MB: wazero grows the native stack to about 100 MB per call.)
func TestRecursionBounded(t *testing.T) {
	if !inChild() {
		runChild(t, t.Name())
		return
	}
	const deadline = 100 * time.Millisecond
	h := newHost(t, neverQuarantine(Config{CacheDir: cacheDir, CallTimeout: deadline, MaxInstances: 4}))
	m, err := h.Load(context.Background(), "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	base := settledRSS(t)
	var worst atomic.Int64
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				err := callHostile(context.Background(), m, "match", "recurse")
				took := time.Since(start)
				var ce *CallError
				if !errors.As(err, &ce) || !strings.HasPrefix(ce.Reason, "stack overflow") {
					t.Errorf("recursion: %v, want a stack overflow", err)
				}
				for w := worst.Load(); int64(took) > w && !worst.CompareAndSwap(w, int64(took)); w = worst.Load() {
				}
			}()
		}
		wg.Wait()
	}
	peak := float64(procStatusKiB(t, "VmHWM")) / 1024
	t.Logf("RSS %.1f MiB before, peak %.1f MiB; slowest call %s (deadline %s)", base, peak, time.Duration(worst.Load()).Round(time.Millisecond), deadline)
	if took := time.Duration(worst.Load()); took > 2*deadline {
		t.Errorf("the slowest recursing call took %s, over twice the deadline", took)
	}
	if peak-base > 32 {
		t.Errorf("peak RSS %.1f MiB, %.1f MiB over the %.1f MiB before the calls", peak, peak-base, base)
	}
}

// TestMemoryReleased: memory a guest grew goes back to the system when its
// instance is done with it: an instance that grew past PoolGrowthPages is
// closed instead of pooled, and a quarantined or removed module releases its
// instances and its compiled code. RSS returns within 8 MiB of where it
// was.
func TestMemoryReleased(t *testing.T) {
	if !inChild() {
		runChild(t, t.Name())
		return
	}
	ctx := context.Background()
	const slack = 8 // MiB
	// growFour makes four instances at once grow by 20 MiB and touch it.
	growFour := func(m *Module) {
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := callHostile(ctx, m, "match", "grow-ok"); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	check := func(what string, base float64) {
		t.Helper()
		if rss := settledRSS(t); rss-base > slack {
			t.Errorf("%s: RSS %.1f MiB, %.1f MiB over the %.1f MiB before", what, rss, rss-base, base)
		} else {
			t.Logf("%s: RSS %.1f MiB (%.1f MiB before)", what, rss, base)
		}
	}

	// Pooling: the default PoolGrowthPages (16 MiB) is below the growth.
	// The deadline is generous: page faults are slow on a loaded machine.
	h := newHost(t, Config{CacheDir: cacheDir, MaxInstances: 4, CallTimeout: 5 * time.Second})
	m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	base := settledRSS(t)
	for i := 0; i < 2; i++ {
		growFour(m)
	}
	if s := m.Stats(); s.Grown != 8 {
		t.Errorf("%d instances closed for their growth, want 8: %+v", s.Grown, s)
	}
	check("after 8 calls that grew 20 MiB each", base)

	// Quarantine and removal, with grown instances in the pool.
	h2 := newHost(t, Config{CacheDir: cacheDir, MaxInstances: 4, CallTimeout: 5 * time.Second, PoolGrowthPages: 65536, QuarantineAfter: 2, RetireDelay: time.Millisecond})
	for _, how := range []string{"quarantined", "removed"} {
		v := map[string]string{"quarantined": "hostile-v1.wasm", "removed": "hostile-v2.wasm"}[how]
		m, err := h2.Load(ctx, v, hostile(v))
		if err != nil {
			t.Fatal(err)
		}
		base := settledRSS(t)
		growFour(m)
		if grown := settledRSS(t); grown-base < 64 {
			t.Fatalf("the pool holds %.1f MiB, want about 80: the test does not test anything", grown-base)
		}
		if how == "quarantined" {
			for !errors.Is(m.Quarantined(), ErrQuarantined) {
				_ = callHostile(ctx, m, "match", "trap")
			}
		} else {
			m.Close()
		}
		waitFor(t, "the module is released", m.Released)
		check("module "+how, base)
	}
}

// TestSlowInitializeBoundedByDeadline: an instance created for an
// evaluation gets the call's deadline, not InitTimeout: a module whose
// _initialize starts spinning fails each evaluation within twice the
// deadline, and is quarantined.
func TestSlowInitializeBoundedByDeadline(t *testing.T) {
	ctx := context.Background()
	var late atomic.Bool
	clock := func() time.Time {
		if late.Load() {
			return time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	const deadline = 500 * time.Millisecond // see TestRecursionStopsAtTheDeadline
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), Clock: clock, CallTimeout: deadline, InitTimeout: 5 * time.Second, QuarantineAfter: 3})
	m, err := h.Load(ctx, "slowinit.wasm", hostile("hostile-slowinit.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	late.Store(true)
	if err := callHostile(ctx, m, "match", "ok"); err != nil {
		t.Fatalf("the pooled instance: %v", err)
	}
	if err := callHostile(ctx, m, "match", "trap"); err == nil {
		t.Fatal("the trap returned")
	}
	for i := 0; i < 2; i++ { // failures 2 and 3 in a row: the second quarantines
		start := time.Now()
		err := callHostile(ctx, m, "match", "ok")
		took := time.Since(start)
		var ce *CallError
		if !errors.As(err, &ce) || !strings.Contains(ce.Reason, "creating an instance") {
			t.Fatalf("call %d: %v after %s, want an instantiation timeout", i, err, took)
		}
		if took > 2*deadline {
			t.Fatalf("call %d failed after %s, over twice the %s deadline", i, took, deadline)
		}
		t.Logf("failed after %s: %s", took.Round(time.Millisecond), ce.Reason)
	}
	if !errors.Is(m.Quarantined(), ErrQuarantined) {
		t.Fatalf("not quarantined: %+v", m.Stats())
	}
}

// TestIntermittentFailuresQuarantine: a module failing every other call is
// never QuarantineAfter times in a row, but half of its last
// QuarantineWindow calls failed: quarantined at the 20th call. One failing
// one call in five is not.
func TestIntermittentFailuresQuarantine(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		every  int // one call in every fails
		atCall int // quarantined at this call; 0 never (in 100)
	}{
		{"every other call", 2, 20},
		{"one in five", 5, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t)})
			m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
			if err != nil {
				t.Fatal(err)
			}
			at := 0
			for i := 1; i <= 100 && at == 0; i++ {
				mode := "ok"
				if i%c.every == 0 {
					mode = "trap"
				}
				_ = callHostile(ctx, m, "match", mode)
				if m.Quarantined() != nil {
					at = i
				}
			}
			if at != c.atCall {
				t.Fatalf("quarantined at call %d, want %d (0: never); stats %+v", at, c.atCall, m.Stats())
			}
			if at != 0 {
				t.Log(m.Quarantined())
				if !strings.Contains(m.Quarantined().Error(), "failed 10 of its last 20 calls") {
					t.Fatalf("quarantine error %q does not say why", m.Quarantined())
				}
			}
		})
	}
}

// TestConcurrentCallsLimited: sixteen callers at once into a module stuck
// in a loop (MaxInstances 2, MaxConcurrentCalls 4): four are held until the
// deadline, the other twelve fail at once with ErrBusy, so that the module
// holds at most four of the caller's workers. Saturation is logged once.
func TestConcurrentCallsLimited(t *testing.T) {
	const deadline = 300 * time.Millisecond
	logs := &hostLog{}
	h := newHost(t, neverQuarantine(Config{CacheDir: cacheDir, Logger: slog.New(logs), CallTimeout: deadline, MaxInstances: 2, MaxConcurrentCalls: 4}))
	m, err := h.Load(context.Background(), "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	var held, busy atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			err := callHostile(context.Background(), m, "match", "loop")
			took := time.Since(t0)
			switch {
			case errors.Is(err, ErrBusy) && took < deadline/2:
				busy.Add(1)
			case err != nil && took >= deadline/2:
				held.Add(1)
			default:
				t.Errorf("%v after %s", err, took)
			}
		}()
	}
	close(start)
	wg.Wait()
	if held.Load() != 4 || busy.Load() != 12 {
		t.Fatalf("%d callers held until the deadline, %d refused at once; want 4 and 12", held.Load(), busy.Load())
	}
	if s := m.Stats(); s.Busy != 12 {
		t.Fatalf("stats %+v", s)
	}
	if n := logs.count(slog.LevelWarn, "wasm module saturated"); n != 1 {
		t.Fatalf("saturation logged %d times, want once: %q", n, logs.lines())
	}
	// Below the limit again, calls go through, and the end of saturation is
	// logged.
	if err := callHostile(context.Background(), m, "match", "ok"); err != nil {
		t.Fatal(err)
	}
	if n := logs.count(slog.LevelInfo, "wasm module no longer saturated"); n != 1 {
		t.Fatalf("end of saturation logged %d times: %q", n, logs.lines())
	}
}

// TestFailuresLoggedOncePerState: a module failing on and off logs one
// warning when it starts failing, one line when it has recovered (a whole
// window without failures), and one error when quarantined; single failures
// are debug lines.
func TestFailuresLoggedOncePerState(t *testing.T) {
	ctx := context.Background()
	logs := &hostLog{}
	h := newHost(t, Config{CacheDir: cacheDir, Logger: slog.New(logs), QuarantineAfter: 3, QuarantineWindow: 20, QuarantineRate: 0.5})
	m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ { // 6 failures, never 3 in a row nor 10 in 20
		_ = callHostile(ctx, m, "match", "trap")
		_ = callHostile(ctx, m, "match", "ok")
		_ = callHostile(ctx, m, "match", "ok")
	}
	for i := 0; i < 20; i++ {
		_ = callHostile(ctx, m, "match", "ok")
	}
	for i := 0; i < 3; i++ {
		_ = callHostile(ctx, m, "match", "trap")
	}
	for i := 0; i < 10; i++ { // quarantined: fail at once, unlogged
		_ = callHostile(ctx, m, "match", "ok")
	}
	if m.Quarantined() == nil {
		t.Fatal("not quarantined")
	}
	want := []string{
		"WARN wasm module failing",
		"INFO wasm module recovered",
		"WARN wasm module failing",
		"ERROR wasm module quarantined",
	}
	got := logs.lines()
	if len(got) != len(want) {
		t.Fatalf("logged %q\nwant %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Fatalf("logged %q\nwant %q", got, want)
		}
	}
}

// TestHealthWindow: the window of health.record slides.
func TestHealthWindow(t *testing.T) {
	h := newHealth(Config{QuarantineAfter: 100, QuarantineWindow: 4, QuarantineRate: 0.5})
	var v verdict
	for i, step := range []struct {
		failed     bool
		fails      int
		quarantine bool
	}{
		{true, 1, false}, {false, 1, false}, {false, 1, false}, {false, 1, false},
		{false, 0, false}, // the failure slid out
		{true, 1, false}, {false, 1, false}, {true, 2, true},
	} {
		v = h.record(step.failed)
		if v.fails != step.fails || v.quarantine != step.quarantine {
			t.Fatalf("step %d: %+v, want %d failures, quarantine %v", i, v, step.fails, step.quarantine)
		}
	}
	full := newHealth(Config{QuarantineAfter: 100, QuarantineWindow: 64, QuarantineRate: 1})
	for i := 0; i < 200; i++ {
		v = full.record(i%2 == 0)
	}
	if v.fails != 32 || v.calls != 64 {
		t.Fatalf("a 64-call window: %+v", v)
	}
}

// hostLog records the host's own log lines (not the guests'), "LEVEL msg".
type hostLog struct {
	mu  sync.Mutex
	out []string
}

func (h *hostLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *hostLog) Handle(_ context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "wasm: ") || r.Level < slog.LevelInfo || !strings.HasPrefix(r.Message, "wasm module") {
		return nil
	}
	if r.Message == "wasm module loaded" {
		return nil
	}
	h.mu.Lock()
	h.out = append(h.out, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	return nil
}
func (h *hostLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *hostLog) WithGroup(string) slog.Handler      { return h }

func (h *hostLog) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.out...)
}

func (h *hostLog) count(level slog.Level, prefix string) int {
	n := 0
	for _, l := range h.lines() {
		if strings.HasPrefix(l, level.String()+" "+prefix) {
			n++
		}
	}
	return n
}
