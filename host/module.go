package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/push2/push2/engine"
)

// Module is one loaded version of a WebAssembly module, identified by its
// content hash. Its profiles (MatchProfiles, SendProfiles) satisfy the engine
// interfaces and can be registered like built-ins.
//
// Calls run on pooled instances, at most Config.MaxInstances at once. A call
// that traps, times out or returns malformed output fails alone and its
// instance is discarded, never reused; after Config.QuarantineAfter
// consecutive failures the module is quarantined (sdk/ABI.md §11). Close
// retires the module gracefully: calls in flight, and calls from callers
// that picked a profile just before a swap, still complete.
type Module struct {
	h        *Host
	name     string
	hash     string
	compiled wazero.CompiledModule
	exports  map[string]bool
	profiles []Profile
	match    []engine.MatchProfile
	send     []engine.SendProfile
	logger   *slog.Logger
	logs     *limiter
	sem      chan struct{}

	mu       sync.Mutex
	idle     []*instance
	inflight int
	retired  bool
	released bool
	hooks    []func(*Module)

	consecutive atomic.Int32
	quarantine  atomic.Pointer[quarantineState]

	calls, failures, timeouts, instances, discarded atomic.Int64
}

type quarantineState struct {
	at  time.Time
	err error
}

// instance is one instantiation of the module with its exports resolved.
type instance struct {
	mod            api.Module
	fns            [kindSend + 1]api.Function
	stdout, stderr *lineWriter
	stack          [1]uint64
}

func (h *Host) newModule(ctx context.Context, name, hash string, compiled wazero.CompiledModule) (*Module, error) {
	has, err := checkExports(compiled)
	if err != nil {
		return nil, err
	}
	m := &Module{
		h: h, name: name, hash: hash, compiled: compiled, exports: has,
		logs: newLimiter(h.cfg.LogRate, h.cfg.LogBurst),
		sem:  make(chan struct{}, h.cfg.MaxInstances),
	}
	m.logger = h.cfg.Logger.With("module", name, "hash", shortHash(hash))

	ictx, cancel := context.WithTimeout(ctx, h.cfg.InitTimeout)
	defer cancel()
	inst, err := m.instantiate(ictx)
	if err != nil {
		return nil, err
	}
	c := newCall(m, kindDescribe, "")
	defer c.release()
	st, err := m.run(ictx, inst, c, 0)
	if err == nil && c.overflow {
		err = fmt.Errorf("push2_describe wrote more than %d bytes", MaxDescribeBytes)
	}
	if err == nil && api.DecodeI32(st) != StatusOK {
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
	return m, nil
}

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
	Calls       int64 // guest calls made (not counting quarantined fast failures)
	Failures    int64 // calls that failed: trap, timeout, malformed output
	Timeouts    int64 // failures that were timeouts
	Instances   int64 // instances created
	Discarded   int64 // instances thrown away after a failure
	Consecutive int   // current run of consecutive failures
	Quarantined bool
}

// Stats returns the module's counters.
func (m *Module) Stats() Stats {
	return Stats{
		Calls: m.calls.Load(), Failures: m.failures.Load(), Timeouts: m.timeouts.Load(),
		Instances: m.instances.Load(), Discarded: m.discarded.Load(),
		Consecutive: int(m.consecutive.Load()), Quarantined: m.quarantine.Load() != nil,
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

func (m *Module) instantiate(ctx context.Context) (*instance, error) {
	inst := &instance{
		stdout: &lineWriter{m: m, level: slog.LevelInfo, name: "stdout"},
		stderr: &lineWriter{m: m, level: slog.LevelWarn, name: "stderr"},
	}
	cfg := m.h.modCfg.WithStdout(inst.stdout).WithStderr(inst.stderr).WithArgs(m.name)
	c := newCall(m, kindInit, "")
	defer c.release()
	mod, err := m.h.rt.InstantiateModule(context.WithValue(ctx, callKey{}, c), m.compiled, cfg)
	if err != nil {
		inst.stdout.flush()
		inst.stderr.flush()
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	inst.mod = mod
	names := [...]string{kindDescribe: exportDescribe, kindValidate: exportValidate, kindPrepare: exportPrepare, kindMatch: exportMatch, kindSend: exportSend}
	for k, name := range names {
		if name != "" && m.exports[name] {
			inst.fns[k] = mod.ExportedFunction(name)
		}
	}
	m.instances.Add(1)
	return inst, nil
}

func (i *instance) close() {
	if i.mod != nil {
		_ = i.mod.Close(context.Background())
	}
	i.stdout.flush()
	i.stderr.flush()
}

// run calls the export for c.kind on inst with one i32 argument, c visible
// to host functions.
func (m *Module) run(ctx context.Context, inst *instance, c *call, arg int32) (uint64, error) {
	fn := inst.fns[c.kind]
	if fn == nil {
		return 0, fmt.Errorf("module does not export %s", c.kind)
	}
	inst.stack[0] = api.EncodeI32(arg)
	err := fn.CallWithStack(context.WithValue(ctx, callKey{}, c), inst.stack[:])
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

// invoke runs one guest call on a pooled instance. check inspects the
// result while the instance is still held: a *GuestError from it is the
// guest's own verdict; any other error is a failure that discards the
// instance and counts towards quarantine.
func (m *Module) invoke(ctx context.Context, c *call, arg int32, check func(uint64) error) error {
	if q := m.quarantine.Load(); q != nil {
		return q.err
	}
	m.mu.Lock()
	if m.released {
		m.mu.Unlock()
		return &CallError{Module: m.name, Hash: m.hash, Export: c.kind.String(), Profile: c.profile, Reason: errReleased.Error(), Err: errReleased}
	}
	m.inflight++
	m.mu.Unlock()
	defer m.leave()

	cctx, cancel := context.WithTimeout(ctx, m.h.cfg.CallTimeout)
	defer cancel()
	select {
	case m.sem <- struct{}{}:
	default:
		select {
		case m.sem <- struct{}{}:
		case <-cctx.Done():
			return &CallError{Module: m.name, Hash: m.hash, Export: c.kind.String(), Profile: c.profile,
				Reason: fmt.Sprintf("all %d instances busy until the deadline", cap(m.sem)), Err: cctx.Err()}
		}
	}
	defer func() { <-m.sem }()

	inst := m.popIdle()
	if inst == nil {
		ictx, icancel := context.WithTimeout(ctx, m.h.cfg.InitTimeout)
		var err error
		inst, err = m.instantiate(ictx)
		icancel()
		if err != nil {
			return m.failed(ctx, c, nil, err)
		}
	}
	m.calls.Add(1)
	res, err := m.run(cctx, inst, c, arg)
	if err == nil && c.overflow {
		err = malformed("more than %d bytes written with push2.output", m.h.cfg.MaxOutputBytes)
	}
	if err == nil && check != nil {
		err = check(res)
		var ge *GuestError
		if errors.As(err, &ge) {
			m.consecutive.Store(0)
			m.pushIdle(inst)
			return err
		}
	}
	if err != nil {
		return m.failed(ctx, c, inst, err)
	}
	m.consecutive.Store(0)
	m.pushIdle(inst)
	return nil
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

func (m *Module) pushIdle(inst *instance) {
	m.mu.Lock()
	if !m.retired && m.quarantine.Load() == nil {
		m.idle = append(m.idle, inst)
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	inst.close()
}

func (m *Module) leave() {
	m.mu.Lock()
	m.inflight--
	arm := m.retired && !m.released && m.inflight == 0
	m.mu.Unlock()
	if arm {
		time.AfterFunc(m.h.cfg.RetireDelay, m.releaseIfIdle)
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
// counted and logged, and the module quarantined after too many in a row.
// A failure caused by the caller (its context canceled) is not held against
// the module.
func (m *Module) failed(parent context.Context, c *call, inst *instance, err error) error {
	if inst != nil {
		inst.close()
		m.discarded.Add(1)
	}
	reason := failureReason(parent, err)
	if reason == "timeout" {
		reason = fmt.Sprintf("timeout: still running after %s", m.h.cfg.CallTimeout)
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
	n := int(m.consecutive.Add(1))
	m.logger.Warn("wasm call failed; instance discarded", "call", c.kind.String(), "profile", c.profile, "reason", reason, "consecutive", n)
	if n >= m.h.cfg.QuarantineAfter {
		q := &quarantineState{at: time.Now(), err: fmt.Errorf("%w: wasm module %s (%s) failed %d times in a row, last: %s; it stays quarantined until a new version is loaded", ErrQuarantined, m.name, shortHash(m.hash), n, reason)}
		if m.quarantine.CompareAndSwap(nil, q) {
			m.logger.Error("wasm module quarantined", "consecutive", n, "last", reason)
			m.h.markQuarantined(m.hash, fmt.Sprintf("%s: %d consecutive failures, last: %s", q.at.UTC().Format(time.RFC3339), n, reason))
			m.mu.Lock()
			idle, hooks := m.idle, append([]func(*Module){}, m.hooks...)
			m.idle = nil
			m.mu.Unlock()
			for _, i := range idle {
				i.close()
			}
			for _, fn := range hooks {
				go fn(m)
			}
		}
	}
	return ce
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
		time.AfterFunc(m.h.cfg.RetireDelay, m.releaseIfIdle)
	}
}

func (m *Module) releaseIfIdle() {
	m.mu.Lock()
	busy := m.inflight > 0
	m.mu.Unlock()
	if !busy {
		m.release()
	}
}

// release frees the module now.
func (m *Module) release() {
	m.mu.Lock()
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
// and RetireDelay, or Host.Close).
func (m *Module) Released() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.released
}
