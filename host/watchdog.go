package host

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// watchdog stops guest calls that outlive their deadline or their caller's
// context (sdk/ABI.md §11 "Deadline"). It is one goroutine per Host, not one
// per call: every tick it looks at the instances with a call running and
// raises the stop flag (instrument.go) of those whose time is up; the
// guest traps at its next function entry or loop header.
//
// A call costs the watchdog nothing but two short, uncontended critical
// sections on its own instance (arm, disarm) and an atomic load: the
// watchdog parks after parkAfter ticks without a running call, and the
// first call after that wakes it. A call is therefore stopped within one
// tick after its deadline, plus the time to its next check.
type watchdog struct {
	tick time.Duration

	mu    sync.Mutex
	insts map[*instance]struct{} // every live instrumented instance

	parked atomic.Bool
	wake   chan struct{} // capacity 1
	quit   chan struct{}
	done   chan struct{}
}

// parkAfter is how many ticks without a running call the watchdog waits
// before it parks: a steady stream of calls never has to wake it.
const parkAfter = 64

// watchTick is the tick for a call timeout: a sixteenth of it, within
// [1 ms, 10 ms].
func watchTick(timeout time.Duration) time.Duration {
	return min(max(timeout/16, time.Millisecond), 10*time.Millisecond)
}

func newWatchdog(tick time.Duration) *watchdog {
	w := &watchdog{tick: tick, insts: map[*instance]struct{}{}, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	w.parked.Store(true)
	go w.run()
	return w
}

func (w *watchdog) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	t.Stop()
	for {
		// Parked. parked was stored before this scan: a call armed after
		// the scan looked at its instance sees parked and wakes us.
		if !w.scan(time.Now()) {
			select {
			case <-w.wake:
			case <-w.quit:
				return
			}
		}
		w.parked.Store(false)
		t.Reset(w.tick)
		for idle := 0; idle < parkAfter; {
			select {
			case now := <-t.C:
				if w.scan(now) {
					idle = 0
				} else {
					idle++
				}
			case <-w.quit:
				t.Stop()
				return
			}
		}
		t.Stop()
		w.parked.Store(true)
	}
}

// scan stops every call whose time is up and reports whether any call was
// running.
func (w *watchdog) scan(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	running := false
	for inst := range w.insts {
		if inst.check(now) {
			running = true
		}
	}
	return running
}

func (w *watchdog) add(inst *instance) {
	w.mu.Lock()
	w.insts[inst] = struct{}{}
	w.mu.Unlock()
}

func (w *watchdog) remove(inst *instance) {
	w.mu.Lock()
	delete(w.insts, inst)
	w.mu.Unlock()
}

// poke wakes a parked watchdog; a call calls it after arming.
func (w *watchdog) poke() {
	if w.parked.Load() {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *watchdog) close() {
	close(w.quit)
	<-w.done
}

// guard is the watchdog's view of one instance: whether a call runs on it,
// until when, for which caller, and whether the watchdog stopped it.
type guard struct {
	mu       sync.Mutex
	stop     api.MutableGlobal // the stop flag of instrument.go
	armed    bool
	deadline time.Time
	ctx      context.Context // the caller's; its end stops the call too
	stopped  sys.ExitError   // zero unless the watchdog raised the flag
}

// arm starts a call that must end by deadline or when ctx ends.
func (g *guard) arm(ctx context.Context, deadline time.Time) {
	g.mu.Lock()
	if g.stopped.ExitCode() != 0 { // raised after the last call had returned
		g.stop.Set(0)
		g.stopped = sys.ExitError{}
	}
	g.armed, g.deadline, g.ctx = true, deadline, ctx
	g.mu.Unlock()
}

// disarm ends the call and returns the reason the watchdog stopped it, if
// it did: sys.ExitCodeDeadlineExceeded or sys.ExitCodeContextCanceled.
func (g *guard) disarm() *sys.ExitError {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.ctx = false, nil
	if g.stopped.ExitCode() != 0 {
		e := g.stopped
		return &e
	}
	return nil
}

// check raises the stop flag if the running call's time is up, and reports
// whether a call is running.
func (inst *instance) check(now time.Time) bool {
	g := &inst.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.armed {
		return false
	}
	if g.stopped.ExitCode() != 0 {
		return true
	}
	code := uint32(0)
	switch err := g.ctx.Err(); {
	case errors.Is(err, context.Canceled):
		code = sys.ExitCodeContextCanceled
	case err != nil || !now.Before(g.deadline):
		code = sys.ExitCodeDeadlineExceeded
	}
	if code != 0 {
		g.stopped = *sys.NewExitError(code)
		g.stop.Set(1)
	}
	return true
}
