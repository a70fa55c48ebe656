package host

import (
	"log/slog"
	"runtime"
	"time"
)

// Config sets up a Host: where compiled code is cached, the sandbox limits
// of sdk/ABI.md §11 "Limits", the crypto behind the host functions of
// sdk/ABI.md §9, and logging. The zero value is usable: every zero field
// takes the default documented on it.
type Config struct {
	// CacheDir keeps compiled machine code between runs (a
	// wazero.CompilationCache keyed by module content and wazero version),
	// so a restart does not recompile every plugin. Empty: in memory only.
	CacheDir string

	// MemoryLimitPages caps each instance's linear memory, in 64 KiB pages;
	// memory.grow beyond it fails (returns -1), which guests turn into a
	// trap. Default 1024 (64 MiB). A module whose declared minimum exceeds
	// it does not load.
	MemoryLimitPages uint32

	// StackLimitBytes is each call's budget of native call stack, in
	// bytes as the host estimates them: entering a function charges 48
	// bytes plus 8 per parameter and local (16 for a v128). A call that
	// goes deeper traps with "stack overflow" (sdk/ABI.md §11 "Call
	// stack"). Default 1 MiB, at most 32 MiB.
	StackLimitBytes uint32

	// CallTimeout is the deadline of one guest call (push2_match,
	// push2_send, push2_validate, push2_prepare). A guest still running
	// then is stopped, even inside a loop, and the call fails. Default
	// 100 ms.
	CallTimeout time.Duration

	// InitTimeout bounds creating the first instance (its _initialize) and
	// the push2_describe call at load time. An instance created later, for
	// an evaluation, is bounded by that call's CallTimeout instead. Default
	// 5 s.
	InitTimeout time.Duration

	// MaxInstances bounds the instances of one module alive at once, which
	// is also how many calls into it run in parallel; more calls wait for a
	// free one (within their deadline). Default 2×GOMAXPROCS, at least 4.
	MaxInstances int

	// MaxConcurrentCalls bounds the calls into one module that run or wait
	// for an instance at once; a call beyond it fails at once (reason
	// "busy"), without counting towards quarantine. It is what keeps a slow
	// module from holding every worker of the caller: set it below the
	// caller's number of workers (push2d uses half of engine.workers).
	// Default 2×MaxInstances.
	MaxConcurrentCalls int

	// PoolGrowthPages: an instance whose memory grew by more than this many
	// 64 KiB pages since it was created is closed after its call instead of
	// going back to the pool, so that one large input does not leave every
	// pooled instance at its peak size. Default MemoryLimitPages/4 (16 MiB
	// of the default 64).
	PoolGrowthPages uint32

	// QuarantineAfter is the number of consecutive failed calls (trap,
	// timeout, malformed output, an instance that could not be created)
	// after which a module is quarantined: its profiles fail fast and leave
	// the registry until a module with another content hash replaces it, and
	// its instances and compiled code are released. Default 5.
	QuarantineAfter int

	// QuarantineWindow and QuarantineRate quarantine a module that fails
	// intermittently: when at least QuarantineRate of its last
	// QuarantineWindow calls failed (rounded up: 10 of the last 20 by
	// default), whether in a row or not. Defaults 20 (at most 64) and 0.5.
	QuarantineWindow int
	QuarantineRate   float64

	// MaxOutputBytes caps what one call may hand the host through
	// push2.output. Default 64 KiB. A send result must also fit the
	// engine's SendInput.Budget.
	MaxOutputBytes int

	// MaxModuleBytes caps the size of a module binary. Default 64 MiB.
	MaxModuleBytes int

	// LogRate and LogBurst rate-limit each module's log lines (push2.log,
	// stdout, stderr) with a token bucket: LogRate lines per second on
	// average, bursts of LogBurst. Defaults 10 and 50. Dropped lines are
	// counted and reported in the next line that gets through.
	LogRate  float64
	LogBurst int

	// RetireDelay is how long a replaced or removed module keeps its
	// compiled code after its last in-flight call ended, for callers that
	// picked its profile from an older registry snapshot just before the
	// swap. Default 5 s.
	RetireDelay time.Duration

	// Crypto backs push2.webpush_encrypt and push2.jwt_sign. Nil makes
	// them answer StatusUnavailable.
	Crypto Crypto

	// Logger receives the host's and the modules' logs. Default: discard.
	Logger *slog.Logger

	// Clock is what push2.now_ms returns outside an evaluation (at load,
	// in validate and prepare calls); inside one it returns the
	// evaluation's engine.Context.Now. Default time.Now.
	Clock func() time.Time

	// NoInterrupt compiles modules as they are, without the instrumentation
	// of instrument.go: the stop flag, which is what lets CallTimeout stop
	// a guest stuck in a loop or a recursion, and the call-stack budget
	// (StackLimitBytes). Without them a looping
	// or recursing guest blocks its caller forever and a deep recursion
	// takes up to 100 MB of stack. It exists to measure what the checks cost
	// (BenchmarkMatchWASM, BenchmarkGuestCalls); never set it in
	// production.
	NoInterrupt bool
}

func (c *Config) fill() {
	if c.MemoryLimitPages == 0 {
		c.MemoryLimitPages = 1024
	}
	if c.MemoryLimitPages > 65536 {
		c.MemoryLimitPages = 65536
	}
	if c.StackLimitBytes == 0 {
		c.StackLimitBytes = 1 << 20
	}
	c.StackLimitBytes = min(c.StackLimitBytes, 32<<20)
	if c.CallTimeout <= 0 {
		c.CallTimeout = 100 * time.Millisecond
	}
	if c.InitTimeout <= 0 {
		c.InitTimeout = 5 * time.Second
	}
	if c.MaxInstances <= 0 {
		c.MaxInstances = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if c.MaxConcurrentCalls <= 0 {
		c.MaxConcurrentCalls = 2 * c.MaxInstances
	}
	if c.PoolGrowthPages == 0 {
		c.PoolGrowthPages = max(1, c.MemoryLimitPages/4)
	}
	if c.QuarantineAfter <= 0 {
		c.QuarantineAfter = 5
	}
	if c.QuarantineWindow <= 0 {
		c.QuarantineWindow = 20
	}
	c.QuarantineWindow = min(c.QuarantineWindow, 64)
	if c.QuarantineRate <= 0 || c.QuarantineRate > 1 {
		c.QuarantineRate = 0.5
	}
	if c.MaxOutputBytes <= 0 {
		c.MaxOutputBytes = 64 << 10
	}
	if c.MaxModuleBytes <= 0 {
		c.MaxModuleBytes = 64 << 20
	}
	if c.LogRate <= 0 {
		c.LogRate = 10
	}
	if c.LogBurst <= 0 {
		c.LogBurst = 50
	}
	if c.RetireDelay <= 0 {
		c.RetireDelay = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}
