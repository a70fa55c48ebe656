package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// install writes b into dir/name the way operators should: a temporary
// file renamed into place.
func install(t testing.TB, dir, name string, b []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func builtinRegistry(t testing.TB) *engine.Registry {
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	return reg
}

const vipURI = "urn:push2:plugin:vip:0"

// TestHotLoad replaces a plugin again and again under a stream of
// concurrent evaluations: none is lost or fails, invalid versions are
// rejected while the old one stays, old versions are released once idle,
// and adding or removing a module changes Registry.Features.
func TestHotLoad(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.RetireDelay = 50 * time.Millisecond
	cfg.CallTimeout = time.Second // the race detector and a busy machine must not turn slowness into failures
	h := newHost(t, cfg)
	reg := builtinRegistry(t)
	dir := t.TempDir()
	w := NewWatcher(h, reg, dir, WatcherConfig{})
	defer w.Close()

	versions := [][]byte{readPlugin(t, "vip-c"), readPlugin(t, "vip-go")}
	install(t, dir, "vip.wasm", versions[0])
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(reg.Features(), vipURI) {
		t.Fatalf("features %v lack %s", reg.Features(), vipURI)
	}

	eng := vipEngine(t, reg)
	evals := startEvaluations(eng)

	var old []*Module
	for i := 1; i <= 10; i++ {
		old = append(old, w.Modules()["vip.wasm"])
		install(t, dir, "vip.wasm", versions[i%2])
		if err := w.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if got := w.Modules()["vip.wasm"].Hash(); got != Hash(versions[i%2]) {
			t.Fatalf("swap %d: live version %s", i, got)
		}
		if i == 5 {
			// A broken version is rejected; the live one stays.
			live := w.Modules()["vip.wasm"]
			install(t, dir, "vip.wasm", []byte("\x00asm\x01\x00\x00\x00garbage"))
			if err := w.Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if w.Modules()["vip.wasm"] != live {
				t.Fatal("a broken version replaced the live one")
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	evals.check(t, "10 swaps", 100)
	waitReleased(t, old)

	// Adding and removing a module changes what disco advertises.
	install(t, dir, "quiet.wasm", readPlugin(t, "quiet-hours-rust"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if f := reg.Features(); !slices.Contains(f, "urn:push2:plugin:quiet-hours:0") || !slices.Contains(f, vipURI) {
		t.Fatalf("features after adding: %v", f)
	}
	os.Remove(filepath.Join(dir, "vip.wasm"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if f := reg.Features(); slices.Contains(f, vipURI) || !slices.Contains(f, "urn:push2:plugin:quiet-hours:0") {
		t.Fatalf("features after removing: %v", f)
	}
}

// evaluations is a stream of evaluations of juliet's boss@example.com
// stanzas from eight goroutines, each expected to push.
type evaluations struct {
	halt            atomic.Bool
	total, failures atomic.Int64
	first           atomic.Value
	wg              sync.WaitGroup
}

func startEvaluations(eng *engine.Engine) *evaluations {
	e := &evaluations{}
	ctx := context.Background()
	for g := 0; g < 8; g++ {
		e.wg.Add(1)
		go func(g int) {
			defer e.wg.Done()
			for i := 0; !e.halt.Load(); i++ {
				st := stanza.MustParse(fmt.Sprintf(`<message xmlns="jabber:client" from="boss@example.com/desk" type="chat" id="g%d-%d"><body>hi</body></message>`, g, i))
				res, err := eng.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: "juliet@example.com", Trigger: engine.TriggerOffline}})
				e.total.Add(1)
				switch {
				case err != nil:
					e.failures.Add(1)
					e.first.CompareAndSwap(nil, err.Error())
				case len(res.Outcomes) != 1 || !res.Outcomes[0].Pushed:
					e.failures.Add(1)
					e.first.CompareAndSwap(nil, fmt.Sprintf("%+v", res.Outcomes))
				}
			}
		}(g)
	}
	return e
}

// stop ends the stream and returns how many evaluations ran and failed,
// and the first failure.
func (e *evaluations) stop() (total, failures int64, first any) {
	e.halt.Store(true)
	e.wg.Wait()
	return e.total.Load(), e.failures.Load(), e.first.Load()
}

// check stops the stream and fails t unless at least min evaluations ran
// and none failed.
func (e *evaluations) check(t *testing.T, during string, min int64) {
	t.Helper()
	total, failures, first := e.stop()
	t.Logf("%d evaluations across %s", total, during)
	if failures != 0 || total < min {
		t.Fatalf("%d of %d evaluations failed; first: %v", failures, total, first)
	}
}

// waitReleased waits until every module of old has been released.
func waitReleased(t *testing.T, old []*Module) {
	t.Helper()
	waitFor(t, "replaced versions are released", func() bool {
		for _, m := range old {
			if !m.Released() {
				return false
			}
		}
		return true
	})
}

// vipEngine is an engine over reg with juliet's registration for the vip
// profile.
func vipEngine(t *testing.T, reg *engine.Registry) *engine.Engine {
	t.Helper()
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	eng := engine.New(store, reg, engine.Config{Logger: testLogger(t)})
	enable := stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>push.example.net</service><client>c</client>
		<match profile="` + vipURI + `"><vip xmlns="urn:example:vip" jid="boss@example.com"/><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)
	if _, _, err := eng.Enable(context.Background(), "juliet@example.com", "phone", enable); err != nil {
		t.Fatal(err)
	}
	return eng
}

// TestHotLoadEvents: the running watcher (file events) swaps versions of
// every language in and out under concurrent evaluations, with a retire
// delay so short that evaluations holding a replaced version's profile
// reach it after its release: they are forwarded to the new version, and
// none fails.
func TestHotLoadEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := testConfig(t)
	cfg.RetireDelay = time.Millisecond
	cfg.CallTimeout = time.Second // slowness under the race detector is not a failure
	h := newHost(t, cfg)
	reg := builtinRegistry(t)
	dir := t.TempDir()
	w := NewWatcher(h, reg, dir, WatcherConfig{Interval: time.Hour}) // events only
	defer w.Close()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	versions := [][]byte{readPlugin(t, "vip-c"), readPlugin(t, "vip-go")}
	live := func(v []byte) func() bool {
		return func() bool { m := w.Modules()["vip.wasm"]; return m != nil && m.Hash() == Hash(v) }
	}
	install(t, dir, "vip.wasm", versions[0])
	waitFor(t, "the first version is live", live(versions[0]))

	evals := startEvaluations(vipEngine(t, reg))
	var old []*Module
	for i := 1; i <= 6; i++ {
		old = append(old, w.Modules()["vip.wasm"])
		v := versions[i%2]
		install(t, dir, "vip.wasm", v)
		waitFor(t, fmt.Sprintf("version %d is live", i), live(v))
		time.Sleep(20 * time.Millisecond)
	}
	evals.check(t, "6 swaps", 100)
	waitReleased(t, old)
	cancel()
	<-done
}

// TestWatcherConflictsAndQuarantine: two files cannot provide the same URI;
// a quarantined module leaves the registry and a new version brings the
// profiles back.
func TestWatcherConflictsAndQuarantine(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, Config{CacheDir: cacheDir, Logger: testLogger(t), CallTimeout: 20 * time.Millisecond, QuarantineAfter: 2})
	reg := builtinRegistry(t)
	dir := t.TempDir()
	w := NewWatcher(h, reg, dir, WatcherConfig{})
	defer w.Close()

	install(t, dir, "a.wasm", readPlugin(t, "vip-c"))
	install(t, dir, "b.wasm", readPlugin(t, "vip-go"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	mods := w.Modules()
	if mods["a.wasm"] == nil || mods["b.wasm"] != nil {
		t.Fatalf("modules %v: b.wasm should be rejected for providing a's URI", mods)
	}

	install(t, dir, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	m := w.Modules()["hostile.wasm"]
	for i := 0; i < 2; i++ {
		if err := callHostile(ctx, m, "match", "trap"); err == nil {
			t.Fatal("trap succeeded")
		}
	}
	waitFor(t, "the quarantined module leaves the registry", func() bool {
		return !slices.Contains(reg.Features(), "urn:test:hostile:match")
	})
	// Touching the file, or writing the same bytes again, changes nothing.
	install(t, dir, "hostile.wasm", hostile("hostile-v1.wasm"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(reg.Features(), "urn:test:hostile:match") {
		t.Fatal("the quarantined content came back")
	}
	install(t, dir, "hostile.wasm", hostile("hostile-v2.wasm"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(reg.Features(), "urn:test:hostile:match") {
		t.Fatal("a new version did not lift the quarantine")
	}
}

// TestWatcherVerify: with a Verify hook, a version it refuses does not go
// live and the previous one stays; the hook sees the NAME.cases/ directory
// next to the module, and modules without one are not verified. (The real
// case runner is tested as a hook in internal/casetest.)
func TestWatcherVerify(t *testing.T) {
	ctx := context.Background()
	h := newHost(t, testConfig(t))
	reg := builtinRegistry(t)
	dir := t.TempDir()
	var seen []string
	refuse := ""
	w := NewWatcher(h, reg, dir, WatcherConfig{Verify: func(_ context.Context, vh *Host, m *Module, casesDir string) error {
		if vh != h {
			t.Error("Verify got another host")
		}
		seen = append(seen, m.Hash()+" "+casesDir)
		if m.Hash() == refuse {
			return fmt.Errorf("refused")
		}
		return nil
	}})
	defer w.Close()
	install(t, dir, "lone.wasm", readPlugin(t, "quiet-hours-rust"))
	if err := os.Mkdir(filepath.Join(dir, "vip.cases"), 0o755); err != nil {
		t.Fatal(err)
	}
	install(t, dir, "vip.wasm", readPlugin(t, "vip-c"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	live := w.Modules()["vip.wasm"]
	if live == nil || w.Modules()["lone.wasm"] == nil {
		t.Fatal("modules accepted by Verify (or without cases) did not go live")
	}
	if want := []string{live.Hash() + " " + filepath.Join(dir, "vip.cases")}; !slices.Equal(seen, want) {
		t.Fatalf("Verify calls %q, want %q", seen, want)
	}
	next := readPlugin(t, "vip-go")
	refuse = Hash(next)
	install(t, dir, "vip.wasm", next)
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Modules()["vip.wasm"] != live || !slices.Contains(reg.Features(), vipURI) {
		t.Fatal("a version refused by Verify went live")
	}
}

// TestWatcherRun: the polling loop picks up a new file by itself.
func TestWatcherRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := newHost(t, testConfig(t))
	reg := builtinRegistry(t)
	dir := t.TempDir()
	w := NewWatcher(h, reg, dir, WatcherConfig{Interval: 20 * time.Millisecond})
	defer w.Close()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	install(t, dir, "vip.wasm", readPlugin(t, "vip-c"))
	waitFor(t, "the watcher loads the new file", func() bool { return slices.Contains(reg.Features(), vipURI) })
	cancel()
	<-done
}

// TestReleasedVersionForwards: a caller that picked a profile of a version
// before a swap and calls it only after that version was released (it was
// held up for longer than RetireDelay) is served by the version that
// replaced it; a removed module has no successor and fails.
func TestReleasedVersionForwards(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.RetireDelay = time.Millisecond
	h := newHost(t, cfg)
	reg := builtinRegistry(t)
	dir := t.TempDir()
	w := NewWatcher(h, reg, dir, WatcherConfig{})
	defer w.Close()
	install(t, dir, "vip.wasm", readPlugin(t, "vip-c"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	first := w.Modules()["vip.wasm"]
	stale, _ := reg.Match(vipURI)
	install(t, dir, "vip.wasm", readPlugin(t, "vip-go"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first version is released", first.Released)
	match := stanza.MustParse(`<match xmlns="urn:xmpp:push2:0" profile="` + vipURI + `"><vip xmlns="urn:example:vip" jid="boss@example.com"/></match>`)
	in := &engine.MatchInput{Stanza: stanza.MustParse(`<message xmlns="jabber:client" from="boss@example.com/desk" type="chat" id="s1"><body>hi</body></message>`),
		Match: match, Context: &engine.Context{Account: "juliet@example.com", Trigger: engine.TriggerOffline}}
	if d, err := stale.Match(ctx, in); err != nil || !d.Push {
		t.Fatalf("stale profile after the swap: %+v, %v", d, err)
	}
	if s := w.Modules()["vip.wasm"].Stats(); s.Calls == 0 {
		t.Fatalf("the new version did not serve the call: %+v", s)
	}
	second := w.Modules()["vip.wasm"]
	stale, _ = reg.Match(vipURI)
	os.Remove(filepath.Join(dir, "vip.wasm"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed version is released", second.Released)
	if _, err := stale.Match(ctx, in); !errors.Is(err, errReleased) {
		t.Fatalf("a removed module's profile: %v, want errReleased", err)
	}
}

// TestInterpretedThenCompiled: a large module (a Go one) goes live on the
// interpreter at once and serves evaluations; its compiled version replaces
// it when the compile is done, the interpreted one is released.
func TestInterpretedThenCompiled(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.RetireDelay = time.Millisecond
	h := newHost(t, cfg)
	reg := builtinRegistry(t)
	dir := t.TempDir()
	w := NewWatcher(h, reg, dir, WatcherConfig{})
	defer w.Close()
	install(t, dir, "vip.wasm", readPlugin(t, "vip-go"))
	if err := w.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	first := w.Modules()["vip.wasm"]
	if first == nil || !first.interpreted {
		t.Fatalf("the Go module is not live on the interpreter: %v", first)
	}
	eng := vipEngine(t, reg)
	evals := startEvaluations(eng)
	for deadline := time.Now().Add(time.Minute); w.Modules()["vip.wasm"].interpreted; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the compiled version did not replace the interpreted one within a minute")
		}
	}
	time.Sleep(20 * time.Millisecond)
	evals.check(t, "the interpreted version and the swap", 1)
	if got := w.Modules()["vip.wasm"]; got.Hash() != first.Hash() {
		t.Fatalf("the compiled version has hash %s, want %s", got.Hash(), first.Hash())
	}
	waitFor(t, "the interpreted version is released", first.Released)
}
