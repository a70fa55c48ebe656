package host

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/host/internal/abi"
	"github.com/push2/push2/profiles"
)

// buildHostile compiles testdata/hostile: the misbehaving module in two
// versions (two content hashes) and the modules that must not load.
func buildHostile() error {
	src := func(n string) string { return filepath.Join(repoRoot, "host", "testdata", "hostile", n) }
	if err := clang(src("hostile.c"), "hostile-v1.wasm"); err != nil {
		return err
	}
	if err := clang(src("hostile.c"), "hostile-v2.wasm", "-DVERSION=2"); err != nil {
		return err
	}
	if err := clang(src("hostile.c"), "hostile-bigmem.wasm", "-Wl,--initial-memory=33554432"); err != nil {
		return err
	}
	if err := clang(src("hostile.c"), "hostile-slowinit.wasm", "-DSLOW_INIT"); err != nil {
		return err
	}
	if err := clang(src("features.c"), "features.wasm", "-msimd128", "-mnontrapping-fptoint", "-msign-ext"); err != nil {
		return err
	}
	for _, d := range []string{"UNKNOWN_ENV", "ABI_V2", "NO_GATE", "UNKNOWN_PUSH2", "WASI_FS", "COMMAND", "RESERVED_URI", "BAD_JSON"} {
		if err := clang(src("imports.c"), "imports-"+d+".wasm", "-D"+d); err != nil {
			return err
		}
	}
	return nil
}

// TestLoadRejects: a module built for another ABI, importing what the
// sandbox does not offer, or describing itself wrongly never loads, and the
// error names the culprit.
func TestLoadRejects(t *testing.T) {
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), MemoryLimitPages: 256})
	cases := []struct {
		name string
		wasm []byte
		want string
	}{
		{"unknown import", hostile("imports-UNKNOWN_ENV.wasm"), `imports function env.getrandom: only the "push2" and "wasi_snapshot_preview1" namespaces`},
		{"unknown ABI version", hostile("imports-ABI_V2.wasm"), "built for push2 ABI v2 (it imports push2.abi_v2), but this host speaks ABI v1"},
		{"no version gate", hostile("imports-NO_GATE.wasm"), "does not import push2.abi_v1"},
		{"unknown host function", hostile("imports-UNKNOWN_PUSH2.wasm"), "imports function push2.teleport, which push2 ABI v1"},
		{"filesystem", hostile("imports-WASI_FS.wasm"), "wasi_snapshot_preview1.path_open: the sandbox offers no filesystem"},
		{"command module", hostile("imports-COMMAND.wasm"), "is a WASI command (exports _start)"},
		{"reserved URI", hostile("imports-RESERVED_URI.wasm"), `"urn:xmpp:push2:match:all" is in a prefix push2.md reserves`},
		{"malformed describe", hostile("imports-BAD_JSON.wasm"), "push2_describe wrote malformed JSON"},
		{"not wasm", []byte("\x7fELF not wasm at all"), "not a WebAssembly binary"},
		{"truncated", hostile("hostile-v1.wasm")[:200], "truncated"},
		{"memory minimum over the cap", hostile("hostile-bigmem.wasm"), "does not compile"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := h.Load(context.Background(), c.name+".wasm", c.wasm)
			if err == nil {
				m.Close()
				t.Fatal("loaded")
			}
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("error %T, want *LoadError", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

var (
	testStanza = stanza.MustParse(`<message xmlns="jabber:client" from="romeo@example.net/x" to="juliet@example.com" type="chat" id="m1"><body>hi</body></message>`)
	testCtx    = &engine.Context{Account: "juliet@example.com", Trigger: engine.TriggerOffline}
)

func hostileMatch(mode string) *stanza.Element {
	return stanza.MustParse(`<match xmlns="urn:xmpp:push2:0" profile="urn:test:hostile:match"><mode xmlns="urn:test:hostile">` + mode + `</mode><send xmlns="urn:test:hostile:send"/></match>`)
}

func hostileSend(mode string) *stanza.Element {
	return stanza.MustParse(`<send xmlns="urn:test:hostile:send"><mode xmlns="urn:test:hostile">` + mode + `</mode></send>`)
}

// callHostile runs one evaluation of mode against m.
func callHostile(ctx context.Context, m *Module, kind, mode string) error {
	if kind == "match" {
		_, err := m.MatchProfiles()[0].Match(ctx, &engine.MatchInput{Stanza: testStanza, Match: hostileMatch(mode), Context: testCtx})
		return err
	}
	_, err := m.SendProfiles()[0].Send(ctx, &engine.SendInput{Stanza: testStanza, Context: testCtx, Send: hostileSend(mode), Budget: 3000, Decision: engine.Decision{Push: true}})
	return err
}

// TestHostile: each kind of misbehaviour fails only its own evaluation,
// within the configured limits, discards the instance, and quarantines the
// module after QuarantineAfter failures in a row, which a new content hash
// lifts.
func TestHostile(t *testing.T) {
	// The deadline is short for the loop, which must hit it, and generous
	// for the others, which must fail by themselves (under the race
	// detector, growing 16 MiB of guest memory takes a few hundred ms).
	const short, long = 200 * time.Millisecond, 5 * time.Second
	cases := []struct {
		mode, kind, want string
		timeout          time.Duration
		limit            time.Duration // how long the failure may take
	}{
		{"loop", "match", "timeout: still running after 200ms", short, time.Second},
		{"grow", "match", "trap: unreachable", long, 3 * time.Second},
		{"trap", "match", "trap: unreachable", long, time.Second},
		{"recurse", "match", "stack overflow", long, time.Second},
		{"bits", "match", "malformed output: push2_match returned 0x100", long, time.Second},
		{"garbage", "send", "malformed output: not well-formed XML", long, time.Second},
		{"big", "send", "over the budget of 3000 bytes", long, time.Second},
		{"flood", "send", "malformed output: more than 65536 bytes", long, time.Second},
		{"push2ns", "send", "<client/> is in urn:xmpp:push2:0", long, time.Second},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			ctx := context.Background()
			h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), CallTimeout: c.timeout, MemoryLimitPages: 256, QuarantineAfter: 3})
			m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
			if err != nil {
				t.Fatal(err)
			}
			reg := engine.NewRegistry()
			if err := m.Register(reg); err != nil {
				t.Fatal(err)
			}
			ok := func() {
				t.Helper()
				if err := callHostile(ctx, m, c.kind, "ok"); err != nil {
					t.Fatalf("a good call failed: %v", err)
				}
			}
			bad := func() {
				t.Helper()
				start := time.Now()
				err := callHostile(ctx, m, c.kind, c.mode)
				took := time.Since(start)
				var ce *CallError
				if !errors.As(err, &ce) {
					t.Fatalf("error %v (%T), want a *CallError", err, err)
				}
				if !strings.Contains(ce.Reason, c.want) {
					t.Fatalf("reason %q, want %q", ce.Reason, c.want)
				}
				if took > c.limit {
					t.Fatalf("the failure took %s, over %s", took, c.limit)
				}
				t.Logf("%s failed in %s: %v", c.mode, took.Round(time.Microsecond), err)
			}

			ok()
			bad()
			bad()
			if s := m.Stats(); s.Discarded != 2 || s.Failures != 2 || s.Consecutive != 2 || s.Quarantined {
				t.Fatalf("after two failures: %+v", s)
			}
			ok() // a fresh instance; the run of failures is broken
			if s := m.Stats(); s.Consecutive != 0 || s.Instances != 3 {
				t.Fatalf("after a success: %+v", s)
			}
			bad()
			bad()
			bad()
			if !errors.Is(m.Quarantined(), ErrQuarantined) {
				t.Fatalf("not quarantined after 3 consecutive failures: %+v", m.Stats())
			}
			// Quarantined profiles answer at once and leave the registry.
			start := time.Now()
			err = callHostile(ctx, m, c.kind, "ok")
			if !errors.Is(err, ErrQuarantined) || time.Since(start) > 10*time.Millisecond {
				t.Fatalf("quarantined call: %v after %s", err, time.Since(start))
			}
			waitFor(t, "profiles leave the registry", func() bool {
				_, m1 := reg.Match("urn:test:hostile:match")
				_, s1 := reg.Send("urn:test:hostile:send")
				return !m1 && !s1
			})
			// The same content stays refused; a new version loads.
			if _, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm")); !errors.Is(err, ErrQuarantined) {
				t.Fatalf("reloading the quarantined hash: %v", err)
			}
			m2, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v2.wasm"))
			if err != nil {
				t.Fatal(err)
			}
			if err := m2.Register(reg); err != nil {
				t.Fatal(err)
			}
			if err := callHostile(ctx, m2, c.kind, "ok"); err != nil {
				t.Fatalf("new version: %v", err)
			}
			if _, ok := reg.Match("urn:test:hostile:match"); !ok {
				t.Fatal("the new version is not registered")
			}
			m.Close()
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting until %s", what)
}

// TestGuestErrorIsNotAFailure: a guest that declines (negative status) gets
// an error for that evaluation, but keeps its instance and its good name.
func TestGuestErrorIsNotAFailure(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), QuarantineAfter: 2})
	m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		err := callHostile(ctx, m, "match", "guest-error")
		var ge *GuestError
		if !errors.As(err, &ge) || ge.Reason != "the guest refuses" || ge.Status != abi.StatusFailed {
			t.Fatalf("got %v", err)
		}
	}
	if s := m.Stats(); s.Failures != 0 || s.Discarded != 0 || s.Instances != 1 || s.Quarantined {
		t.Fatalf("stats %+v", s)
	}
}

// TestBadPointers: pointers outside guest memory and unknown handles get
// StatusInvalid; the host neither crashes nor fails the call.
func TestBadPointers(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t)})
	m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := callHostile(ctx, m, "match", "badptr"); err != nil {
		t.Fatal(err)
	}
	if err := callHostile(ctx, m, "send", "badptr"); err != nil {
		t.Fatal(err)
	}
}

// TestBatchedReads: push2.facts and push2.fields return, id for id, what
// push2.fact and push2.field return (the guest traps on any difference),
// in match calls with and without a message.
func TestBatchedReads(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t)})
	m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*stanza.Element{testStanza, benchStanza, stanza.MustParse(`<presence xmlns="jabber:client"/>`)} {
		if _, err := m.MatchProfiles()[0].Match(ctx, &engine.MatchInput{Stanza: st, Match: hostileMatch("batch"), Context: testCtx}); err != nil {
			t.Fatal(err)
		}
	}
}

// countingHandler counts log records at or above a level.
type countingHandler struct {
	n     *atomic.Int64
	inner slog.Handler
}

func (h countingHandler) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "wasm: ") {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler        { return h }

// TestLogRateLimit: a guest logging in a loop gets LogBurst lines through.
func TestLogRateLimit(t *testing.T) {
	ctx := context.Background()
	var n atomic.Int64
	h := newHost(t, Config{CacheDir: cacheDir, Logger: slog.New(countingHandler{n: &n}), LogBurst: 20, LogRate: 1})
	m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := callHostile(ctx, m, "match", "log-flood"); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got < 20 || got > 22 {
		t.Fatalf("%d guest lines logged out of 1000; want the burst of 20", got)
	}
}

// TestCallerCancelIsNotHeldAgainstTheModule: when the caller's own deadline
// stops a guest, the evaluation fails and the instance goes, but the module
// is not marked as failing.
func TestCallerCancelIsNotHeldAgainstTheModule(t *testing.T) {
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), CallTimeout: time.Second, QuarantineAfter: 1})
	m, err := h.Load(context.Background(), "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := callHostile(ctx, m, "match", "loop"); err == nil {
		t.Fatal("the loop returned")
	}
	if s := m.Stats(); s.Failures != 0 || s.Discarded != 1 || s.Quarantined {
		t.Fatalf("stats %+v", s)
	}
}

// TestProvisionCancel: a guest stuck in push2_validate for a client's
// <enable/> stops when the request's context ends, long before the call
// timeout; the enable-time error is internal-server-error, and the
// cancellation is not held against the module.
func TestProvisionCancel(t *testing.T) {
	const callTimeout = time.Minute
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), CallTimeout: callTimeout, QuarantineAfter: 1})
	m, err := h.Load(context.Background(), "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	mp := m.MatchProfiles()[0]
	if _, err := mp.Provision(context.Background(), hostileMatch("ok")); err != nil {
		t.Fatalf("a good <match/> refused: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = mp.Provision(ctx, hostileMatch("validate-loop"))
	if took := time.Since(start); took >= callTimeout {
		t.Fatalf("the call ran to its timeout (%s): the context did not cancel it", took)
	}
	var se *stanza.Error
	if !errors.As(err, &se) || se.Condition != stanza.CondInternalServerError {
		t.Fatalf("error %v (%T), want internal-server-error", err, err)
	}
	if s := m.Stats(); s.Failures != 0 || s.Quarantined {
		t.Fatalf("stats %+v", s)
	}
}

// TestEngineContainsFailures: through the real pipeline, a failing WASM
// profile fails only its registration's evaluation; the same stanza still
// reaches the registration that uses a built-in profile.
func TestEngineContainsFailures(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), CallTimeout: 20 * time.Millisecond})
	m, err := h.Load(ctx, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	defer store.Close()
	eng := engine.New(store, reg, engine.Config{Logger: testLogger(t)})
	enable := func(id, match string) {
		el := stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>push.example.net</service><client>c-` + id + `</client>` + match + `</enable>`)
		if _, _, err := eng.Enable(ctx, "juliet@example.com", id, el); err != nil {
			t.Fatal(err)
		}
	}
	enable("wasm", `<match profile="urn:test:hostile:match"><mode xmlns="urn:test:hostile">loop</mode><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match>`)
	enable("builtin", `<match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match>`)
	res, err := eng.Evaluate(ctx, &engine.Event{Stanza: testStanza, Context: *testCtx})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]engine.Outcome{}
	for _, o := range res.Outcomes {
		got[o.Reg.ID] = o
	}
	if o := got["wasm"]; o.Pushed || !strings.Contains(o.Reason, "match profile error") || !strings.Contains(o.Reason, "timeout") {
		t.Fatalf("wasm registration: %+v", o)
	}
	if o := got["builtin"]; !o.Pushed {
		t.Fatalf("builtin registration: %+v", o)
	}
}

// recordingHandler keeps the guest's log records.
type recordingHandler struct {
	mu  *sync.Mutex
	out *[]string
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "wasm: ") {
		return nil
	}
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		s += " " + a.Key + "=" + a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.out = append(*h.out, s)
	h.mu.Unlock()
	return nil
}
func (h recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return attrsHandler{h, as}
}
func (h recordingHandler) WithGroup(string) slog.Handler { return h }

type attrsHandler struct {
	recordingHandler
	as []slog.Attr
}

func (h attrsHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(h.as...)
	return h.recordingHandler.Handle(ctx, r)
}
func (h attrsHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return attrsHandler{h.recordingHandler, append(append([]slog.Attr{}, h.as...), as...)}
}

// TestStdoutBecomesLog: WASI stdout and stderr are log lines tagged with the
// module's name, hash and profile URIs; a partial line is flushed when its
// instance goes.
func TestStdoutBecomesLog(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var lines []string
	h := newHost(t, Config{CacheDir: cacheDir, Logger: slog.New(recordingHandler{&mu, &lines})})
	m, err := h.Load(ctx, "talker.wasm", hostile("hostile-v1.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := callHostile(ctx, m, "match", "stdout"); err != nil {
		t.Fatal(err)
	}
	m.release() // closes the instance: flushes "partial"
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"INFO wasm: hello from stdout source=stdout",
		"WARN wasm: and stderr source=stderr",
		"INFO wasm: partial source=stdout",
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines: %q", len(lines), lines)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) || !strings.Contains(lines[i], "module=talker.wasm") ||
			!strings.Contains(lines[i], "hash=sha256:") || !strings.Contains(lines[i], "urn:test:hostile:match") {
			t.Errorf("line %d: %q, want %q tagged with the module", i, lines[i], w)
		}
	}
}
