package host

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// The benchmarks compare a built-in match profile with the WASM match
// plugins of every language on the same kind of input, and measure what the
// sandbox's checks (the stop flag and the call-stack budget of
// instrument.go, with the watchdog) cost: "interrupt" is the production
// configuration, "no-interrupt" has Config.NoInterrupt set. Run them with
//
//	go test -bench . -run '^$' ./host/
var benchStanza = stanza.MustParse(`<message xmlns="jabber:client" from="romeo@example.net/orchard" to="juliet@example.com" type="chat" id="b1">` +
	`<body>Are you coming to the party tonight? It is urgent.</body><active xmlns="http://jabber.org/protocol/chatstates"/>` +
	`<stanza-id xmlns="urn:xmpp:sid:0" by="juliet@example.com" id="arch-1"/></message>`)

var benchCtx = &engine.Context{Account: "juliet@example.com", Trigger: engine.TriggerOffline, Now: time.Date(2024, 5, 1, 23, 30, 0, 0, time.UTC)}

// benchPlugins: the match plugin of each language and the <match/> it
// reads.
var benchPlugins = []struct{ lang, plugin, match string }{
	{"go", "vip-go", `<match xmlns="urn:xmpp:push2:0" profile="urn:push2:plugin:vip:0"><vip xmlns="urn:example:vip" jid="boss@example.com"/><vip xmlns="urn:example:vip" jid="team@conference.example.com"/><keyword xmlns="urn:example:vip">urgent</keyword><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match>`},
	{"c", "vip-c", `<match xmlns="urn:xmpp:push2:0" profile="urn:push2:plugin:vip:0"><vip xmlns="urn:example:vip" jid="boss@example.com"/><vip xmlns="urn:example:vip" jid="team@conference.example.com"/><keyword xmlns="urn:example:vip">urgent</keyword><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match>`},
	{"rust", "quiet-hours-rust", `<match xmlns="urn:xmpp:push2:0" profile="urn:push2:plugin:quiet-hours:0"><quiet xmlns="urn:example:quiet" start="22" end="7" tz-offset-minutes="60"/><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match>`},
	{"assemblyscript", "quiet-hours-assemblyscript", `<match xmlns="urn:xmpp:push2:0" profile="urn:push2:plugin:quiet-hours:0"><quiet xmlns="urn:example:quiet" start="22" end="7" tz-offset-minutes="60"/><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match>`},
}

// BenchmarkMatchNative is the built-in urn:xmpp:push2:match:important on the
// same stanza, facts computed per call as the engine does per event.
func BenchmarkMatchNative(b *testing.B) {
	p := profiles.Important()
	match := stanza.MustParse(`<match xmlns="urn:xmpp:push2:0" profile="urn:xmpp:push2:match:important"/>`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := p.Match(ctx, &engine.MatchInput{Stanza: benchStanza, Match: match, Context: benchCtx})
		if err != nil || !d.Push {
			b.Fatal(d, err)
		}
	}
}

// sandboxModes are the configurations the benchmarks compare:
// "interrupt" is production (the stop flag checked at function entries and
// loop headers, the watchdog, the call-stack budget), "no-interrupt" has
// none of them (Config.NoInterrupt).
var sandboxModes = []struct {
	name string
	cfg  func(*Config)
}{
	{"interrupt", func(*Config) {}},
	{"no-interrupt", func(c *Config) { c.NoInterrupt = true }},
}

// loopCPU runs fn b.N times and reports, besides the wall time, the CPU
// time of the calling thread per call (cpu-ns/op, on Linux): on a shared
// machine the wall time also counts the time other processes had the CPU,
// the thread's CPU time does not.
func loopCPU(b *testing.B, fn func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	start := threadCPU()
	for b.Loop() {
		fn()
	}
	if cpu := threadCPU() - start; cpu > 0 {
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkMatchWASM runs each language's match plugin through its
// engine.MatchProfile, exactly as the pipeline calls it.
func BenchmarkMatchWASM(b *testing.B) {
	for _, p := range benchPlugins {
		for _, mode := range sandboxModes {
			b.Run(p.lang+"/"+mode.name, func(b *testing.B) {
				cfg := Config{CacheDir: cacheDir, CallTimeout: time.Second}
				mode.cfg(&cfg)
				mp, stop := benchProfile(b, p.plugin, cfg)
				defer stop()
				match := stanza.MustParse(p.match)
				ctx := context.Background()
				loopCPU(b, func() {
					d, err := mp.Match(ctx, &engine.MatchInput{Stanza: benchStanza, Match: match, Context: benchCtx})
					if err != nil || !d.Push {
						b.Fatal(d, err)
					}
				})
			})
		}
	}
}

// BenchmarkMatchWASMParallel shows the instance pool under concurrent
// callers (up to Config.MaxInstances instances).
func BenchmarkMatchWASMParallel(b *testing.B) {
	for _, p := range benchPlugins {
		b.Run(p.lang, func(b *testing.B) {
			mp, stop := benchProfile(b, p.plugin, Config{CacheDir: cacheDir, CallTimeout: time.Second})
			defer stop()
			match := stanza.MustParse(p.match)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := mp.Match(ctx, &engine.MatchInput{Stanza: benchStanza, Match: match, Context: benchCtx}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkInstantiate is the cost of a fresh instance (what a failure, or a
// pool that grows, pays): instantiation, _initialize, one match call.
func BenchmarkInstantiate(b *testing.B) {
	for _, p := range benchPlugins {
		b.Run(p.lang, func(b *testing.B) {
			h, err := New(context.Background(), Config{CacheDir: cacheDir})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(context.Background())
			m, err := h.Load(context.Background(), p.plugin, readPlugin(b, p.plugin))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				inst, err := m.instantiate(ctx, time.Now().Add(time.Minute))
				if err != nil {
					b.Fatal(err)
				}
				inst.close()
			}
		})
	}
}

func benchProfile(b *testing.B, plugin string, cfg Config) (engine.MatchProfile, func()) {
	b.Helper()
	h, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	m, err := h.Load(context.Background(), plugin, readPlugin(b, plugin))
	if err != nil {
		b.Fatal(err)
	}
	return m.MatchProfiles()[0], func() { h.Close(context.Background()) }
}

// BenchmarkGuestLoop isolates what the stop-flag check costs per loop
// iteration: one call running a 1000-iteration loop in C, in each sandbox
// mode. (ns/op − the empty call) / 1000 is the cost of one back-edge.
func BenchmarkGuestLoop(b *testing.B) {
	for _, mode := range sandboxModes {
		for _, guest := range []string{"ok", "count"} {
			b.Run(mode.name+"/"+map[string]string{"ok": "empty", "count": "1000-iterations"}[guest], func(b *testing.B) {
				benchHostile(b, mode.cfg, guest)
			})
		}
	}
}

// BenchmarkGuestCalls isolates what the instrumentation (instrument.go:
// stop flag and call-stack budget) costs per guest function call: one call running fib(15),
// 1,973 calls of a function without a loop, in each sandbox mode.
// (ns/op − the empty call of BenchmarkGuestLoop) / 1973 is the cost of one
// guest call.
func BenchmarkGuestCalls(b *testing.B) {
	for _, mode := range sandboxModes {
		b.Run(mode.name, func(b *testing.B) { benchHostile(b, mode.cfg, "calls") })
	}
}

// benchHostile times push2_match of the hostile module in mode.
func benchHostile(b *testing.B, sandbox func(*Config), mode string) {
	cfg := Config{CacheDir: cacheDir, CallTimeout: time.Second} // a loaded machine stalls threads for 100 ms
	sandbox(&cfg)
	h, err := New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(context.Background())
	m, err := h.Load(context.Background(), "hostile", hostile("hostile-v1.wasm"))
	if err != nil {
		b.Fatal(err)
	}
	mp := m.MatchProfiles()[0]
	in := &engine.MatchInput{Stanza: testStanza, Match: hostileMatch(mode), Context: testCtx}
	ctx := context.Background()
	loopCPU(b, func() {
		if _, err := mp.Match(ctx, in); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkHotLoad is what goal 6 of issue 12 asks of a hot load: from a
// new version's rename into the watched directory to its profile answering
// through the registry, with the watcher running (file events) and a
// version never seen before (a custom section with a counter gives each
// iteration its own content hash, so nothing comes from a compilation
// cache). The watcher has no Verify hook here; push2d's case check adds
// the cases' own run time. usable-ms/op is drop → usable (interpreted, for
// a large module), compiled-ms/op drop → the compiled version live.
func BenchmarkHotLoad(b *testing.B) {
	for _, p := range benchPlugins {
		b.Run(p.lang, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			h, err := New(ctx, Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer h.Close(context.Background())
			reg := engine.NewRegistry()
			dir := b.TempDir()
			w := NewWatcher(h, reg, dir, WatcherConfig{Interval: time.Hour})
			defer w.Close()
			go w.Run(ctx)
			wasm := readPlugin(b, p.plugin)
			match := stanza.MustParse(p.match)
			uri := match.AttrValue("profile")
			n := 0
			var total, compiled time.Duration
			for b.Loop() {
				n++
				v := append(append([]byte{}, wasm...), customSection("push2-bench", fmt.Sprint(n))...)
				hash := Hash(v)
				start := time.Now()
				install(b, dir, "p.wasm", v)
				for {
					if m := w.Modules()["p.wasm"]; m != nil && m.Hash() == hash {
						break
					}
					time.Sleep(200 * time.Microsecond)
				}
				mp, ok := reg.Match(uri)
				if !ok {
					b.Fatal("profile not registered")
				}
				if d, err := mp.Match(ctx, &engine.MatchInput{Stanza: benchStanza, Match: match, Context: benchCtx}); err != nil || !d.Push {
					b.Fatal(d, err)
				}
				total += time.Since(start)
				for w.Modules()["p.wasm"].interpreted {
					time.Sleep(time.Millisecond)
				}
				compiled += time.Since(start)
			}
			b.ReportMetric(float64(total)/1e6/float64(n), "usable-ms/op")
			b.ReportMetric(float64(compiled)/1e6/float64(n), "compiled-ms/op")
		})
	}
}

// customSection is a custom section named name holding payload.
func customSection(name, payload string) []byte {
	body := append(appendName(nil, name), payload...)
	return append(appendU32([]byte{secCustom}, uint32(len(body))), body...)
}
