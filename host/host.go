package host

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/host/internal/abi"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Host runs WebAssembly profiles: one wazero runtime (compiler engine, with
// a compilation cache), the push2 host functions of sdk/ABI.md and the WASI
// subset of sdk/ABI.md §12. Load turns a module into engine profiles. A Host
// is safe for concurrent use.
type Host struct {
	cfg    Config
	rt     wazero.Runtime // the compiler
	irt    wazero.Runtime // the interpreter, for a module's first seconds (Watcher)
	cache  wazero.CompilationCache
	funcs  map[string]hostFunc
	modCfg wazero.ModuleConfig

	watchdog *watchdog // stops calls at their deadline (watchdog.go)

	mu          sync.Mutex
	modules     map[*Module]struct{}
	quarantined map[string]string // content hash → why
	closed      bool
}

// New starts a host. Close releases it.
func New(ctx context.Context, cfg Config) (*Host, error) {
	cfg.fill()
	h := &Host{cfg: cfg, modules: map[*Module]struct{}{}, quarantined: map[string]string{}}
	var err error
	if cfg.CacheDir != "" {
		h.cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("host: compilation cache in %s: %w", cfg.CacheDir, err)
		}
	} else {
		h.cache = wazero.NewCompilationCache()
	}
	// NewRuntimeConfig picks the compiler wherever wazero has one (amd64,
	// arm64) and the interpreter elsewhere. wazero's close-on-context-done
	// stays off: the stop flag that instrument.go compiles into every
	// module and the watchdog stop a guest at its deadline, for a fraction
	// of the cost (sdk/ABI.md §11 "Deadline"). The features are pinned to
	// wazero's CoreFeaturesV2 rather than left to wazero's default: the
	// instrumentation is exact only without tail calls and exceptions, and
	// decodes only the instructions of these features.
	rc := wazero.NewRuntimeConfig().
		WithCoreFeatures(api.CoreFeaturesV2).
		WithCompilationCache(h.cache).
		WithMemoryLimitPages(cfg.MemoryLimitPages).
		WithCloseOnContextDone(false)
	h.funcs = map[string]hostFunc{}
	for _, f := range h.hostFuncs() {
		h.funcs[f.name] = f
	}
	if h.rt, err = h.newRuntime(ctx, rc); err != nil {
		return nil, err
	}
	// The interpreter serves a large new module while the compiler works
	// on it (Watcher, sdk/ABI.md §10): it starts in a fraction of the
	// compile time. Interpreted code is Go code, so wazero's own
	// close-on-context-done stops it (at loop headers, and at the empty
	// loop of each yield of instrument.go), not the watchdog.
	irc := wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(api.CoreFeaturesV2).
		WithMemoryLimitPages(cfg.MemoryLimitPages).
		WithCloseOnContextDone(!cfg.NoInterrupt)
	if h.irt, err = h.newRuntime(ctx, irc); err != nil {
		h.rt.Close(ctx)
		return nil, err
	}
	h.modCfg = wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(). // Module.instantiate runs _initialize under the watchdog
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(cappedSleep).
		WithRandSource(rand.Reader)
	h.watchdog = newWatchdog(watchTick(cfg.CallTimeout))
	return h, nil
}

// newRuntime starts a runtime with WASI and the push2 host module.
func (h *Host) newRuntime(ctx context.Context, rc wazero.RuntimeConfig) (wazero.Runtime, error) {
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("host: WASI: %w", err)
	}
	b := rt.NewHostModuleBuilder(abi.ImportModule)
	for _, f := range h.funcs {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).WithName(f.name).Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("host: push2 host module: %w", err)
	}
	return rt, nil
}

// cappedSleep backs WASI poll_oneoff. A host function cannot be interrupted
// by the call deadline, so a guest sleep is cut into 1 ms slices: a guest
// that sleeps in a loop returns to its own code, where the deadline stops it.
func cappedSleep(ns int64) { time.Sleep(time.Duration(min(ns, int64(time.Millisecond)))) }

// Config returns the effective configuration, defaults filled in.
func (h *Host) Config() Config { return h.cfg }

// Close unloads every module at once, in-flight calls or not, and stops the
// runtime.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	mods := make([]*Module, 0, len(h.modules))
	for m := range h.modules {
		mods = append(mods, m)
	}
	h.mu.Unlock()
	for _, m := range mods {
		m.release()
	}
	h.watchdog.close()
	err := h.rt.Close(ctx)
	if ierr := h.irt.Close(ctx); err == nil {
		err = ierr
	}
	if cerr := h.cache.Close(ctx); err == nil {
		err = cerr
	}
	return err
}

// LoadError is why a module did not load. Its message names the offending
// import, export or profile and says what to do.
type LoadError struct {
	Module string // the name given to Load, usually the file name
	Hash   string
	Err    error
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("wasm module %s (%s): %v", e.Module, shortHash(e.Hash), e.Err)
}

func (e *LoadError) Unwrap() error { return e.Err }

// ErrQuarantined is in the chain of every error caused by a quarantine: a
// call to a quarantined module, or an attempt to load its content again.
var ErrQuarantined = errors.New("module quarantined")

// Hash returns the content hash the host keys modules by: "sha256:" and the
// hex digest.
func Hash(wasm []byte) string {
	s := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(s[:])
}

func shortHash(h string) string {
	if len(h) > 19 {
		return h[:19] // "sha256:" + 12 hex digits
	}
	return h
}

// Load compiles a module, checks it against ABI v1, instantiates it once
// and asks it which profiles it provides (sdk/ABI.md §3 push2_describe).
// name identifies it in logs and errors (the file name, for the Watcher).
// Compilation is the slow part: call Load off the evaluation path. Errors
// are *LoadError.
func (h *Host) Load(ctx context.Context, name string, wasm []byte) (*Module, error) {
	return h.load(ctx, name, wasm, false)
}

// load is Load, on the interpreter if interpreted.
func (h *Host) load(ctx context.Context, name string, wasm []byte, interpreted bool) (*Module, error) {
	if name == "" {
		name = "module" // WASI argv[0] must not be empty
	}
	hash := Hash(wasm)
	fail := func(format string, args ...any) error {
		return &LoadError{Module: name, Hash: hash, Err: fmt.Errorf(format, args...)}
	}
	h.mu.Lock()
	closed, why := h.closed, h.quarantined[hash]
	h.mu.Unlock()
	if closed {
		return nil, fail("the host is closed")
	}
	if why != "" {
		return nil, fail("%w since %s; load a new version (another content hash)", ErrQuarantined, why)
	}
	if len(wasm) > h.cfg.MaxModuleBytes {
		return nil, fail("%d bytes, over the %d-byte limit", len(wasm), h.cfg.MaxModuleBytes)
	}
	imports, err := parseImports(wasm)
	if err != nil {
		return nil, fail("%v", err)
	}
	if err := h.checkImports(imports); err != nil {
		return nil, fail("%v", err)
	}
	rt := h.rt
	if interpreted {
		rt = h.irt
	}
	compiled, err := h.compile(ctx, rt, wasm)
	if err != nil {
		return nil, fail("%v", err)
	}
	m, err := h.newModule(ctx, name, hash, rt, compiled)
	if err != nil {
		compiled.Close(ctx)
		return nil, fail("%v", err)
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		m.release()
		return nil, fail("the host is closed")
	}
	h.modules[m] = struct{}{}
	h.mu.Unlock()
	h.cfg.Logger.Info("wasm module loaded", "module", name, "hash", shortHash(hash), "profiles", m.uris())
	return m, nil
}

// compile instruments wasm for the call-stack limit and deadline
// (instrument.go) and compiles the result. When the rewrite or its
// compilation fails, the original is compiled to tell a module wazero
// refuses anyway, which gets wazero's own message, from one the rewrite
// does not handle.
func (h *Host) compile(ctx context.Context, rt wazero.Runtime, wasm []byte) (wazero.CompiledModule, error) {
	// Every core compiles: a Go module has thousands of functions, and a
	// hot load is only as quick as its compile (sdk/ABI.md §10).
	ctx = experimental.WithCompilationWorkers(ctx, runtime.GOMAXPROCS(0))
	if h.cfg.NoInterrupt {
		c, err := rt.CompileModule(ctx, wasm)
		if err != nil {
			return nil, fmt.Errorf("does not compile: %v", err)
		}
		return c, nil
	}
	ins, ierr := instrument(wasm, h.cfg.StackLimitBytes)
	if ierr == nil {
		c, err := rt.CompileModule(ctx, ins.wasm)
		if err == nil {
			return c, nil
		}
		ierr = err
	}
	c, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("does not compile: %v", err)
	}
	c.Close(ctx)
	return nil, fmt.Errorf("compiles, but the host cannot add its call-stack checks (sdk/ABI.md §11): %v", ierr)
}

// checkImports is the version gate and import allow-list of sdk/ABI.md §2.
func (h *Host) checkImports(imports []wasmImport) error {
	gate := false
	for _, im := range imports {
		switch im.Module {
		case abi.ImportModule:
			if v, ok := strings.CutPrefix(im.Name, "abi_v"); ok {
				if n, err := strconv.Atoi(v); err == nil && n != abi.Version {
					return fmt.Errorf("built for push2 ABI v%d (it imports push2.%s), but this host speaks ABI v%d: rebuild it with an SDK for ABI v%d", n, im.Name, abi.Version, abi.Version)
				}
			}
			f, ok := h.funcs[im.Name]
			if !ok || im.Kind != 0 {
				return fmt.Errorf("imports %s %s, which push2 ABI v%d (revision %d) does not provide: it needs a newer host, or was built against another ABI", im.kindName(), im, abi.Version, abi.Revision)
			}
			if f.name == "abi_v1" {
				gate = true
			}
		case abi.WASIModule:
			if im.Kind != 0 || !abi.WASIAllowed[im.Name] {
				return fmt.Errorf("imports %s %s: the sandbox offers no filesystem, network or other WASI calls beyond clock, random, stdout/stderr and process exit (sdk/ABI.md §12)", im.kindName(), im)
			}
		default:
			return fmt.Errorf("imports %s %s: only the %q and %q namespaces can be imported (sdk/ABI.md §1); a C module must avoid libc, an AssemblyScript one needs --use abort=", im.kindName(), im, abi.ImportModule, abi.WASIModule)
		}
	}
	if !gate {
		return fmt.Errorf("does not import push2.abi_v1, so it was not built for push2 ABI v%d: build it with a push2 SDK (sdk/ABI.md §2)", abi.Version)
	}
	return nil
}

// checkExports verifies the exports of sdk/ABI.md §3 and their signatures.
func checkExports(c wazero.CompiledModule) (has map[string]bool, err error) {
	fns := c.ExportedFunctions()
	has = map[string]bool{}
	want := map[string][2][]api.ValueType{
		abi.ExportDescribe:   {nil, {i32}},
		abi.ExportMatch:      {{i32}, {i32}},
		abi.ExportSend:       {{i32}, {i32}},
		abi.ExportValidate:   {{i32}, {i32}},
		abi.ExportPrepare:    {{i32}, {i32}},
		abi.ExportInitialize: {nil, nil},
	}
	for name, sig := range want {
		f, ok := fns[name]
		if !ok {
			continue
		}
		if !slices.Equal(f.ParamTypes(), sig[0]) || !slices.Equal(f.ResultTypes(), sig[1]) {
			return nil, fmt.Errorf("exports %s with the wrong signature %s; sdk/ABI.md §3 wants %s", name, sigString(f.ParamTypes(), f.ResultTypes()), sigString(sig[0], sig[1]))
		}
		has[name] = true
	}
	if !has[abi.ExportDescribe] {
		return nil, fmt.Errorf("does not export %s: build it with a push2 SDK (sdk/ABI.md §3)", abi.ExportDescribe)
	}
	if _, ok := fns[abi.ExportStart]; ok && !has[abi.ExportInitialize] {
		return nil, errors.New("is a WASI command (exports _start): build it as a reactor, e.g. Go with -buildmode=c-shared (sdk/ABI.md §3)")
	}
	if _, ok := c.ExportedMemories()[abi.ExportMemory]; !ok {
		return nil, errors.New(`does not export its memory as "memory" (sdk/ABI.md §4)`)
	}
	return has, nil
}

func sigString(params, results []api.ValueType) string {
	n := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return n(params) + " -> " + n(results)
}

// Profile describes one profile a module provides, from push2_describe.
type Profile struct {
	URI  string
	Kind string // "match" or "send"
	// Index is what the host passes to push2_match or push2_send to say
	// which profile a call is for: the position in the describe list.
	Index int32
}

type description struct {
	Profiles []struct {
		URI  string `json:"uri"`
		Kind string `json:"kind"`
	} `json:"profiles"`
}

// parseDescription validates push2_describe's JSON (sdk/ABI.md §3).
func parseDescription(b []byte, has map[string]bool) ([]Profile, error) {
	var d description
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("push2_describe wrote malformed JSON: %v", err)
	}
	if len(d.Profiles) == 0 {
		return nil, errors.New("push2_describe lists no profiles")
	}
	if len(d.Profiles) > abi.MaxProfiles {
		return nil, fmt.Errorf("push2_describe lists %d profiles, more than %d", len(d.Profiles), abi.MaxProfiles)
	}
	seen := map[string]bool{}
	var out []Profile
	for i, p := range d.Profiles {
		switch {
		case p.URI == "" || len(p.URI) > 1024 || strings.IndexFunc(p.URI, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			return nil, fmt.Errorf("profile %d has an empty, overlong or malformed URI %q", i, p.URI)
		case stanza.IsReservedURI(p.URI) || strings.HasPrefix(p.URI, stanza.NSPush2):
			return nil, fmt.Errorf("profile URI %q is in a prefix push2.md reserves for XEPs: use a URI of your own, e.g. urn:example:…", p.URI)
		case seen[p.URI]:
			return nil, fmt.Errorf("profile URI %q is listed twice", p.URI)
		}
		seen[p.URI] = true
		switch p.Kind {
		case "match":
			if !has[abi.ExportMatch] {
				return nil, fmt.Errorf("describes match profile %q but does not export %s", p.URI, abi.ExportMatch)
			}
		case "send":
			if !has[abi.ExportSend] {
				return nil, fmt.Errorf("describes send profile %q but does not export %s", p.URI, abi.ExportSend)
			}
		default:
			return nil, fmt.Errorf("profile %q has kind %q; want \"match\" or \"send\"", p.URI, p.Kind)
		}
		out = append(out, Profile{URI: p.URI, Kind: p.Kind, Index: int32(i)})
	}
	return out, nil
}

func (h *Host) forget(m *Module) {
	h.mu.Lock()
	delete(h.modules, m)
	h.mu.Unlock()
}

func (h *Host) markQuarantined(hash, why string) {
	h.mu.Lock()
	h.quarantined[hash] = why
	h.mu.Unlock()
}

// Quarantined reports whether modules with this content hash are refused
// because an earlier instance of it was quarantined, and why.
func (h *Host) Quarantined(hash string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	why, ok := h.quarantined[hash]
	return why, ok
}

func (h *Host) logger() *slog.Logger { return h.cfg.Logger }
