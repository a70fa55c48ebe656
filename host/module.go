package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/host/internal/abi"
)

// Module is one loaded version of a WebAssembly module, identified by its
// content hash. Its profiles (MatchProfiles, SendProfiles) satisfy the engine
// interfaces and can be registered like built-ins.
//
// Calls run on pooled instances, at most Config.MaxInstances at once and
// Config.MaxConcurrentCalls running or waiting. A call that traps, times out
// or returns malformed output fails alone and its instance is discarded,
// never reused; after Config.QuarantineAfter consecutive failures, or a
// failure rate of Config.QuarantineRate over the last
// Config.QuarantineWindow calls, the module is quarantined and released
// (sdk/ABI.md §11). Close retires the module gracefully: calls in flight,
// and calls from callers that picked a profile just before a swap, still
// complete.
type Module struct {
	h        *Host
	xml      xmlCache // el_xml of registration elements (call.go)
	name     string
	hash     string
	compiled wazero.CompiledModule
	rt       wazero.Runtime // h.rt, or h.irt while a compile is under way (Watcher)
	// interpreted: the module runs on the interpreter, whose calls wazero's
	// close-on-context-done stops rather than the watchdog.
	interpreted bool
	exports     map[string]bool
	profiles    []Profile
	match       []engine.MatchProfile
	send        []engine.SendProfile
	logger      *slog.Logger
	logs        *limiter
	sem         chan struct{} // one token per instance in use
	admitted    atomic.Int32  // calls running or waiting for an instance

	mu       sync.Mutex
	idle     []*instance
	inflight int
	lastLeft time.Time // when the last call ended
	retired  bool
	released bool
	hooks    []func(*Module)

	// successor is the version that replaced this one (Watcher), to which
	// calls that reach this module after its release are forwarded.
	successor atomic.Pointer[Module]

	health     health
	saturated  atomic.Bool // calls are being refused as busy
	quarantine atomic.Pointer[quarantineState]

	calls, failures, timeouts, instances, discarded, grown, busy atomic.Int64
}

type quarantineState struct {
	at  time.Time
	err error
}

// instance is one instantiation of the module with its exports resolved.
type instance struct {
	mod            api.Module
	fns            [kindSend + 1]api.Function
	depth          api.MutableGlobal // the stack budget in use (instrument.go); nil if not instrumented
	guard          guard             // the watchdog's; guard.stop is nil if not instrumented
	wd             *watchdog         // nil if not instrumented
	mem            *guestMemory      // nil with wazero's own memory
	pages          uint32            // memory size when created
	stdout, stderr *lineWriter
	stack          [1]uint64
}

func (h *Host) newModule(ctx context.Context, name, hash string, rt wazero.Runtime, compiled wazero.CompiledModule) (*Module, error) {
	has, err := checkExports(compiled)
	if err != nil {
		return nil, err
	}
	m := &Module{
		h: h, name: name, hash: hash, rt: rt, interpreted: rt == h.irt, compiled: compiled, exports: has,
		logs:   newLimiter(h.cfg.LogRate, h.cfg.LogBurst),
		sem:    make(chan struct{}, h.cfg.MaxInstances),
		health: newHealth(h.cfg),
	}
	m.logger = h.cfg.Logger.With("module", name, "hash", shortHash(hash))

	deadline := time.Now().Add(h.cfg.InitTimeout)
	inst, err := m.instantiate(ctx, deadline)
	if err != nil {
		return nil, err
	}
	c := newCall(m, kindDescribe, "")
	defer c.release()
	st, err := m.run(ctx, deadline, inst, c, 0)
	if err == nil && c.overflow {
		err = fmt.Errorf("push2_describe wrote more than %d bytes", abi.MaxDescribeBytes)
	}
	if err == nil && api.DecodeI32(st) != abi.StatusOK {
		err = fmt.Errorf("push2_describe returned status %d", api.DecodeI32(st))
	}
	if err != nil {
		inst.close()
		return nil, fmt.Errorf("push2_describe failed: %s", failureReason(ctx, err))
	}
	m.profiles, err = parseDescription(c.out, has)
	if err != nil {
		inst.close()
		return nil, err
	}
	for _, p := range m.profiles {
		if p.Kind == "match" {
			m.match = append(m.match, &matchProfile{m: m, uri: p.URI, index: p.Index})
		} else {
			m.send = append(m.send, &sendProfile{m: m, uri: p.URI, index: p.Index})
		}
	}
	m.logger = m.logger.With("profiles", m.uris())
	m.idle = append(m.idle, inst)
	if m.interpreted {
		// An interpreted instance takes tens of milliseconds to create (Go's
		// runtime initialisation), too close to a call's deadline: the
		// interpreted version runs on instances made now, waiting for one
		// (within the deadline) rather than making more.
		m.sem = make(chan struct{}, interpretedInstances)
		for len(m.idle) < interpretedInstances {
			inst, err := m.instantiate(ctx, deadline)
			if err != nil {
				m.release()
				return nil, err
			}
			m.idle = append(m.idle, inst)
		}
	}
	return m, nil
}

// interpretedInstances is the pool of an interpreted version.
const interpretedInstances = 2

// Name returns the name the module was loaded under.
func (m *Module) Name() string { return m.name }

// Hash returns the content hash, "sha256:<hex>".
func (m *Module) Hash() string { return m.hash }

// Source describes the module for engine.ProfileInfo.Source: "wasm NAME
// sha256:<12 hex digits>".
func (m *Module) Source() string { return "wasm " + m.name + " " + shortHash(m.hash) }

// Profiles lists what push2_describe declared, in its order.
func (m *Module) Profiles() []Profile { return append([]Profile(nil), m.profiles...) }

// MatchProfiles returns the module's match profiles, for engine.Registry.
func (m *Module) MatchProfiles() []engine.MatchProfile { return m.match }

// SendProfiles returns the module's send profiles, for engine.Registry.
func (m *Module) SendProfiles() []engine.SendProfile { return m.send }

func (m *Module) uris() []string {
	out := make([]string, len(m.profiles))
	for i, p := range m.profiles {
		out[i] = p.URI
	}
	return out
}

// URIs lists the URIs of all the module's profiles.
func (m *Module) URIs() []string { return m.uris() }

// Quarantined returns the quarantine error, or nil if the module is usable.
func (m *Module) Quarantined() error {
	if q := m.quarantine.Load(); q != nil {
		return q.err
	}
	return nil
}

// OnQuarantine registers fn to run (in its own goroutine) when the module
// is quarantined; Register uses it to take the profiles out of the registry.
func (m *Module) OnQuarantine(fn func(*Module)) {
	m.mu.Lock()
	m.hooks = append(m.hooks, fn)
	m.mu.Unlock()
	if m.quarantine.Load() != nil {
		go fn(m)
	}
}

// Stats are a module's counters since it was loaded.
type Stats struct {
	Calls          int64 // guest calls made (not counting quarantined fast failures)
	Failures       int64 // calls that failed: trap, timeout, malformed output, no instance
	Timeouts       int64 // failures that were timeouts
	Busy           int64 // calls refused at once: Config.MaxConcurrentCalls were in flight
	Instances      int64 // instances created
	Discarded      int64 // instances thrown away after a failure
	Grown          int64 // instances closed after a call because their memory grew past Config.PoolGrowthPages
	Consecutive    int   // current run of consecutive failures
	RecentFailures int   // failures among the last Config.QuarantineWindow calls
	Quarantined    bool
}

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	consecutive, recent := m.health.counts()
	return Stats{
		Calls: m.calls.Load(), Failures: m.failures.Load(), Timeouts: m.timeouts.Load(), Busy: m.busy.Load(),
		Instances: m.instances.Load(), Discarded: m.discarded.Load(), Grown: m.grown.Load(),
		Consecutive: consecutive, RecentFailures: recent, Quarantined: m.quarantine.Load() != nil,
	}
}

// Register adds the module's profiles to reg, replacing profiles with the
// same URIs, and arranges that a quarantine takes them out again (if reg
// still holds this module's version). The Watcher does the same for the
// modules it manages.
func (m *Module) Register(reg *engine.Registry) error {
	if err := reg.Update(m.Source(), m.match, m.send, nil); err != nil {
		return err
	}
	m.OnQuarantine(func(m *Module) { unregisterIfCurrent(reg, m) })
	return nil
}

// unregisterIfCurrent removes m's profiles from reg, leaving alone any URI
// that a newer version took over in the meantime.
func unregisterIfCurrent(reg *engine.Registry, m *Module) {
	reg.Withdraw(m.match, m.send)
}

// instantiate creates an instance, its _initialize bounded by deadline and
// ctx like a call. wazero does not run _initialize itself (Host.modCfg has
// no start functions): the instance must exist for the watchdog to stop it.
func (m *Module) instantiate(ctx context.Context, deadline time.Time) (*instance, error) {
	inst := &instance{
		stdout: &lineWriter{m: m, level: slog.LevelInfo, name: "stdout"},
		stderr: &lineWriter{m: m, level: slog.LevelWarn, name: "stderr"},
	}
	cfg := m.h.modCfg.WithStdout(inst.stdout).WithStderr(inst.stderr).WithArgs(m.name)
	c := newCall(m, kindInit, "")
	defer c.release()
	ictx := experimental.WithMemoryAllocator(context.WithValue(ctx, callKey{}, c), newGuestMemory(&inst.mem))
	mod, err := m.rt.InstantiateModule(ictx, m.compiled, cfg)
	inst.mem.leave()
	if err != nil {
		inst.stdout.flush()
		inst.stderr.flush()
		return nil, &instantiateError{err}
	}
	inst.mod = mod
	inst.depth, _ = mod.ExportedGlobal(stackExport).(api.MutableGlobal)
	if stop, ok := mod.ExportedGlobal(stopExport).(api.MutableGlobal); ok && !m.interpreted {
		inst.guard.stop, inst.wd = stop, m.h.watchdog
		inst.wd.add(inst)
	}
	if mem := mod.Memory(); mem != nil {
		inst.pages = mem.Size() / pageSize
	}
	names := [...]string{kindInit: abi.ExportInitialize, kindDescribe: abi.ExportDescribe, kindValidate: abi.ExportValidate, kindPrepare: abi.ExportPrepare, kindMatch: abi.ExportMatch, kindSend: abi.ExportSend}
	for k, name := range names {
		if m.exports[name] {
			inst.fns[k] = mod.ExportedFunction(name)
		}
	}
	if inst.fns[kindInit] != nil {
		if _, err := m.run(ctx, deadline, inst, c, 0); err != nil {
			inst.close()
			return nil, &instantiateError{err}
		}
	}
	m.instances.Add(1)
	return inst, nil
}

func (i *instance) close() {
	if i.wd != nil {
		i.wd.remove(i)
	}
	if i.mod != nil {
		_ = i.mod.Close(context.Background())
	}
	i.stdout.flush()
	i.stderr.flush()
}

const pageSize = 65536

// instantiateError is an instance that could not be created: its
// _initialize trapped or ran out of time.
type instantiateError struct{ err error }

func (e *instantiateError) Error() string { return "instantiate: " + e.err.Error() }
func (e *instantiateError) Unwrap() error { return e.err }

// errStackOverflow is a guest stopped by the call-stack budget.
var errStackOverflow = errors.New("stack overflow")

// run calls the export for c.kind on inst with one argument (none for
// _initialize and push2_describe), c visible to host functions. The
// watchdog stops the guest at deadline or when ctx ends.
func (m *Module) run(ctx context.Context, deadline time.Time, inst *instance, c *call, arg int32) (uint64, error) {
	fn := inst.fns[c.kind]
	if fn == nil {
		return 0, fmt.Errorf("module does not export %s", c.kind)
	}
	if inst.depth != nil {
		inst.depth.Set(0) // the export's own frame is not restored by a caller
	}
	inst.stack[0] = api.EncodeI32(arg)
	if inst.wd != nil {
		inst.guard.arm(ctx, deadline)
		inst.wd.poke()
	}
	c.parent = ctx
	var cctx context.Context = c // host functions find c in it (callFrom)
	if m.interpreted {
		var cancel context.CancelFunc
		cctx, cancel = context.WithDeadline(cctx, deadline)
		defer cancel()
	}
	inst.mem.enter()
	err := fn.CallWithStack(cctx, inst.stack[:])
	inst.mem.leave()
	if inst.wd != nil {
		if stopped := inst.guard.disarm(); stopped != nil && err != nil {
			// The trap is the stop flag's (or came after it was raised).
			return 0, fmt.Errorf("%w: %w", stopped, err)
		}
	}
	if err != nil && inst.depth != nil && uint32(inst.depth.Get()) > m.h.cfg.StackLimitBytes {
		// The prologue that set depth past the budget trapped at once.
		err = fmt.Errorf("%w: %w", errStackOverflow, err)
	}
	return inst.stack[0], err
}

// GuestError is a failure the guest reported itself, by returning a
// negative status (sdk/ABI.md §4, §5): the module works, the input was not to
// its liking. It neither discards the instance nor counts towards
// quarantine.
type GuestError struct {
	Status int32
	Reason string // from push2.set_reason, may be empty
}

func (e *GuestError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("profile error (status %d): %s", e.Status, e.Reason)
	}
	return fmt.Sprintf("profile error (status %d)", e.Status)
}

// CallError is a failed guest call (sdk/ABI.md §11): a trap, a timeout, a
// stack overflow, memory exhaustion (which guests turn into a trap) or
// malformed output (§4).
// Its text never contains stanza content.
type CallError struct {
	Module, Hash string
	Export       string
	Profile      string
	Reason       string // "timeout after 100ms", "trap: unreachable", "malformed output: …"
	Err          error
}

func (e *CallError) Error() string {
	return fmt.Sprintf("wasm module %s (%s) %s for %s: %s", e.Module, shortHash(e.Hash), e.Export, e.Profile, e.Reason)
}

func (e *CallError) Unwrap() error { return e.Err }

// errMalformed marks output the host refused (sdk/ABI.md §4).
type errMalformed struct{ msg string }

func (e *errMalformed) Error() string { return "malformed output: " + e.msg }

func malformed(format string, args ...any) error {
	return &errMalformed{fmt.Sprintf(format, args...)}
}

var errReleased = errors.New("module was unloaded")

// ErrBusy is in the chain of the error of a call refused because
// Config.MaxConcurrentCalls calls into its module were already in flight.
var ErrBusy = errors.New("module busy")

// invoke runs one guest call on a pooled instance. check inspects the
// result while the instance is still held: a *GuestError from it is the
// guest's own verdict; any other error is a failure that discards the
// instance and counts towards quarantine.
//
// Everything a call costs is bounded by Config.CallTimeout: the wait for an
// instance, creating one when the pool is empty, and the guest's run.
func (m *Module) invoke(ctx context.Context, c *call, arg int32, check func(uint64) error) error {
	if q := m.quarantine.Load(); q != nil {
		return q.err
	}
	limit := m.h.cfg.MaxConcurrentCalls
	n := int(m.admitted.Add(1))
	defer m.admitted.Add(-1)
	if n > limit {
		m.busy.Add(1)
		if m.saturated.CompareAndSwap(false, true) {
			m.logger.Warn("wasm module saturated: further calls fail at once until fewer are in flight", "limit", limit)
		}
		return &CallError{Module: m.name, Hash: m.hash, Export: c.kind.String(), Profile: c.profile,
			Reason: fmt.Sprintf("busy: %d calls already running or waiting", limit), Err: ErrBusy}
	}
	if n <= max(1, limit/2) && m.saturated.Load() && m.saturated.CompareAndSwap(true, false) {
		m.logger.Info("wasm module no longer saturated", "refused_so_far", m.busy.Load())
	}
	m.mu.Lock()
	if m.released || m.replacedLocked() {
		// A replaced version serves only the calls already in it: one that
		// arrives later would have to make an instance for nothing.
		m.mu.Unlock()
		if next, index, ok := m.forward(c); ok {
			c.m = next
			return next.invoke(ctx, c, index, check)
		}
		return &CallError{Module: m.name, Hash: m.hash, Export: c.kind.String(), Profile: c.profile, Reason: errReleased.Error(), Err: errReleased}
	}
	m.inflight++
	m.mu.Unlock()
	defer m.leave()

	deadline := time.Now().Add(m.h.cfg.CallTimeout)
	select {
	case m.sem <- struct{}{}:
	default:
		if err := m.waitInstance(ctx, deadline); err != nil {
			return &CallError{Module: m.name, Hash: m.hash, Export: c.kind.String(), Profile: c.profile,
				Reason: fmt.Sprintf("all %d instances busy until the deadline", cap(m.sem)), Err: err}
		}
	}
	defer func() { <-m.sem }()

	inst := m.popIdle()
	if inst == nil && m.replaced() {
		// Replaced while this call waited: the new version has instances.
		if next, index, ok := m.forward(c); ok {
			c.m = next
			return next.invoke(ctx, c, index, check)
		}
	}
	if inst == nil {
		var err error
		if inst, err = m.instantiate(ctx, deadline); err != nil {
			return m.failed(ctx, c, nil, err)
		}
	}
	m.calls.Add(1)
	res, err := m.run(ctx, deadline, inst, c, arg)
	if err == nil && c.overflow {
		err = malformed("more than %d bytes written with push2.output", m.h.cfg.MaxOutputBytes)
	}
	if err == nil && check != nil {
		err = check(res)
		var ge *GuestError
		if errors.As(err, &ge) {
			m.succeeded()
			m.pushIdle(inst)
			return err
		}
	}
	if err != nil {
		return m.failed(ctx, c, inst, err)
	}
	m.succeeded()
	m.pushIdle(inst)
	return nil
}

// waitInstance takes a token of m.sem, waiting until deadline at most; the
// slow path of invoke, which is the only one that needs a timer.
func (m *Module) waitInstance(ctx context.Context, deadline time.Time) error {
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	select {
	case m.sem <- struct{}{}:
		return nil
	case <-cctx.Done():
		return cctx.Err()
	}
}

// replaced reports whether a newer version took over from the retired m.
func (m *Module) replaced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replacedLocked()
}

func (m *Module) replacedLocked() bool { return m.retired && m.successor.Load() != nil }

// forward finds where a call that reached m after its release goes: the
// same profile in the version that replaced m, if it has one. A caller
// that picked m's profile from a registry snapshot just before a swap, and
// was then held up for longer than Config.RetireDelay (a loaded machine
// does that), is thereby served by the new version instead of failing.
func (m *Module) forward(c *call) (*Module, int32, bool) {
	next := m.successor.Load()
	if next == nil {
		return nil, 0, false
	}
	kind := "match"
	if c.kind == kindSend || c.kind == kindPrepare {
		kind = "send"
	}
	for _, p := range next.profiles {
		if p.URI == c.profile && p.Kind == kind {
			return next, p.Index, true
		}
	}
	return nil, 0, false
}

func (m *Module) popIdle() *instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.idle); n > 0 {
		inst := m.idle[n-1]
		m.idle = m.idle[:n-1]
		return inst
	}
	return nil
}

// pushIdle returns inst to the pool, unless the module is retired or the
// instance's memory grew past Config.PoolGrowthPages: an instance keeps the
// memory it grew to, and the next call may not need it.
func (m *Module) pushIdle(inst *instance) {
	if mem := inst.mod.Memory(); mem != nil && mem.Size()/pageSize > inst.pages+m.h.cfg.PoolGrowthPages {
		m.grown.Add(1)
		inst.close()
		return
	}
	m.mu.Lock()
	if !m.retired && m.quarantine.Load() == nil {
		m.idle = append(m.idle, inst)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	inst.close()
}

// leave ends a call. The last call out of a retired module arms its
// release; out of a quarantined one, whose calls all fail at once from now
// on, it releases it at once (if no call entered meanwhile).
func (m *Module) leave() {
	m.mu.Lock()
	m.inflight--
	m.lastLeft = time.Now()
	last := m.retired && !m.released && m.inflight == 0
	m.mu.Unlock()
	switch {
	case last && m.quarantine.Load() != nil:
		m.releaseIfIdle(0)
	case last:
		m.armRelease(m.h.cfg.RetireDelay)
	}
}

// failureReason names what went wrong for logs and CallError.Reason. parent
// is the caller's context: a deadline that passed there is the caller's, not
// the guest's.
func failureReason(parent context.Context, err error) string {
	var me *errMalformed
	if errors.As(err, &me) {
		return me.Error()
	}
	if errors.Is(err, errStackOverflow) {
		return "stack overflow: deeper than the call-stack budget"
	}
	var exit *sys.ExitError
	if errors.As(err, &exit) {
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded:
			if parent.Err() == nil {
				return "timeout"
			}
			return "timeout: the caller's deadline passed"
		case sys.ExitCodeContextCanceled:
			return "canceled by the caller"
		}
		return fmt.Sprintf("exited with code %d (a Go guest that panics exits with 2; see its stderr above)", exit.ExitCode())
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.TrimPrefix(msg, "wasm error: ")
	switch {
	case strings.Contains(msg, "stack overflow"):
		return "stack overflow"
	case strings.Contains(msg, "instantiate"):
		return msg
	}
	return "trap: " + msg
}

// failed handles a failed call: the instance is discarded, the failure
// counted, and the module quarantined when its health says so. A failure
// caused by the caller (its context canceled) is not held against the
// module. Only changes of state are logged (failing, recovered,
// quarantined); single failures are debug lines, so a module failing on
// every call cannot flood the log.
func (m *Module) failed(parent context.Context, c *call, inst *instance, err error) error {
	if inst != nil {
		inst.close()
		m.discarded.Add(1)
	}
	reason := failureReason(parent, err)
	var ie *instantiateError
	switch {
	case reason == "timeout" && errors.As(err, &ie):
		reason = fmt.Sprintf("timeout: creating an instance (%s) took longer than the %s deadline", abi.ExportInitialize, m.h.cfg.CallTimeout)
	case reason == "timeout":
		reason = fmt.Sprintf("timeout: still running after %s", m.h.cfg.CallTimeout)
	case errors.As(err, &ie) && !strings.HasPrefix(reason, "instantiate"):
		reason = "instantiate: " + reason
	}
	ce := &CallError{Module: m.name, Hash: m.hash, Export: c.kind.String(), Profile: c.profile, Reason: reason, Err: err}
	if parent.Err() != nil {
		m.logger.Debug("wasm call abandoned by its caller", "call", c.kind.String(), "profile", c.profile, "err", parent.Err())
		return ce
	}
	m.failures.Add(1)
	if strings.HasPrefix(reason, "timeout") {
		m.timeouts.Add(1)
	}
	v := m.health.record(true)
	m.logger.Debug("wasm call failed; instance discarded", "call", c.kind.String(), "profile", c.profile, "reason", reason, "consecutive", v.consecutive)
	if v.started && !v.quarantine {
		m.logger.Warn("wasm module failing: a call failed and its instance was discarded; further failures are not logged until it recovers or is quarantined",
			"call", c.kind.String(), "profile", c.profile, "reason", reason)
	}
	if v.quarantine {
		m.quarantineNow(v, reason)
	}
	return ce
}

// succeeded records a call that worked (a guest's own error included).
func (m *Module) succeeded() {
	if v := m.health.record(false); v.recovered {
		m.logger.Info("wasm module recovered: its last calls all succeeded", "calls", v.calls, "failures_while_failing", v.since)
	}
}

// quarantineNow quarantines the module (once), takes its idle instances
// down, tells the hooks (which unregister its profiles) and releases it as
// soon as no call runs in it.
func (m *Module) quarantineNow(v verdict, reason string) {
	var what string
	if v.consecutive >= m.h.cfg.QuarantineAfter {
		what = fmt.Sprintf("failed %d times in a row", v.consecutive)
	} else {
		what = fmt.Sprintf("failed %d of its last %d calls", v.fails, v.calls)
	}
	q := &quarantineState{at: time.Now(), err: fmt.Errorf("%w: wasm module %s (%s) %s, last: %s; it stays quarantined until a new version is loaded", ErrQuarantined, m.name, shortHash(m.hash), what, reason)}
	if !m.quarantine.CompareAndSwap(nil, q) {
		return
	}
	m.logger.Error("wasm module quarantined: its profiles fail at once and leave the registry until a new version is loaded", "why", what, "last", reason)
	m.h.markQuarantined(m.hash, fmt.Sprintf("%s: %s, last: %s", q.at.UTC().Format(time.RFC3339), what, reason))
	m.mu.Lock()
	idle, hooks := m.idle, append([]func(*Module){}, m.hooks...)
	m.idle = nil
	m.retired = true // leave releases the module after the last call in flight
	m.mu.Unlock()
	for _, i := range idle {
		i.close()
	}
	for _, fn := range hooks {
		go fn(m)
	}
}

// Close retires the module: idle instances go at once, calls in flight
// finish, and the compiled code is released Config.RetireDelay after the
// last call ended. Profiles of a retired module keep working until then, so
// a caller holding an older registry snapshot is not failed by a swap.
func (m *Module) Close() {
	m.mu.Lock()
	if m.retired {
		m.mu.Unlock()
		return
	}
	m.retired = true
	idle := m.idle
	m.idle = nil
	arm := m.inflight == 0
	m.mu.Unlock()
	for _, i := range idle {
		i.close()
	}
	if arm {
		m.armRelease(m.h.cfg.RetireDelay)
	}
}

// armRelease releases the module after d if by then it has been idle for
// Config.RetireDelay.
func (m *Module) armRelease(d time.Duration) {
	time.AfterFunc(d, func() { m.releaseIfIdle(m.h.cfg.RetireDelay) })
}

// releaseIfIdle releases the module if no call is in flight and none ended
// during the last quiet; otherwise the call in flight arms the release when
// it leaves, or a timer is armed for the rest of quiet. The test and the
// release are one critical section: a call that enters after the test
// fails with errReleased (and is forwarded to the successor, see
// Module.next), never runs on freed code.
func (m *Module) releaseIfIdle(quiet time.Duration) {
	m.mu.Lock()
	if m.released || m.inflight > 0 {
		m.mu.Unlock()
		return
	}
	if rest := quiet - time.Since(m.lastLeft); quiet > 0 && !m.lastLeft.IsZero() && rest > 0 {
		m.mu.Unlock()
		m.armRelease(rest)
		return
	}
	m.free()
}

// release frees the module now: its instances, its compiled code (which
// also drops it from the runtime's in-memory compilation cache) and the
// host's reference to it.
func (m *Module) release() {
	m.mu.Lock()
	m.free()
}

// free is release with m.mu held, which it unlocks.
func (m *Module) free() {
	if m.released {
		m.mu.Unlock()
		return
	}
	m.released, m.retired = true, true
	idle := m.idle
	m.idle = nil
	m.mu.Unlock()
	for _, i := range idle {
		i.close()
	}
	_ = m.compiled.Close(context.Background())
	m.h.forget(m)
}

// Released reports whether the module's code has been freed (after Close
// and RetireDelay, after a quarantine once its last call ended, or after
// Host.Close).
func (m *Module) Released() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.released
}

// health is what quarantine decides on (sdk/ABI.md §11): the run of
// consecutive failures and the outcomes of the last QuarantineWindow
// calls, and the failing state that logging follows.
type health struct {
	mu          sync.Mutex
	after       int    // Config.QuarantineAfter
	size        int    // Config.QuarantineWindow, at most 64
	threshold   int    // failures in the window that quarantine
	window      uint64 // bit i set: the call i+1 calls ago failed
	calls       int    // outcomes in the window, at most size
	fails       int    // failures in the window
	consecutive int
	failing     bool // from a failure until a window without any
	since       int  // failures since failing began
}

func newHealth(cfg Config) health {
	return health{after: cfg.QuarantineAfter, size: cfg.QuarantineWindow,
		threshold: max(1, int(math.Ceil(cfg.QuarantineRate*float64(cfg.QuarantineWindow))))}
}

// verdict is the outcome of recording a call.
type verdict struct {
	started, recovered, quarantine bool
	consecutive, fails, calls      int
	since                          int
}

func (h *health) record(failed bool) verdict {
	h.mu.Lock()
	defer h.mu.Unlock()
	oldest := uint64(1) << (h.size - 1)
	if h.calls == h.size {
		if h.window&oldest != 0 {
			h.fails--
		}
	} else {
		h.calls++
	}
	h.window = (h.window << 1) & (oldest<<1 - 1)
	var v verdict
	if failed {
		h.window |= 1
		h.fails++
		h.consecutive++
		if !h.failing {
			h.failing, h.since, v.started = true, 0, true
		}
		h.since++
		v.quarantine = h.consecutive >= h.after || h.fails >= h.threshold
	} else {
		h.consecutive = 0
		if h.failing && h.fails == 0 {
			h.failing, v.recovered = false, true
		}
	}
	v.consecutive, v.fails, v.calls, v.since = h.consecutive, h.fails, h.calls, h.since
	return v
}

func (h *health) counts() (consecutive, recent int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.consecutive, h.fails
}
