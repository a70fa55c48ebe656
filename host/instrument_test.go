package host

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// compileAndRun instantiates wasm in a plain wazero runtime with the host's
// features and calls export(args). It returns the results and, for an
// instrumented module, the depth global afterwards.
func compileAndRun(t testing.TB, wasm []byte, export string, args ...uint64) ([]uint64, uint64) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	mod, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	res, err := mod.ExportedFunction(export).Call(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	var depth uint64
	if g := mod.ExportedGlobal(stackExport); g != nil {
		depth = g.Get()
	}
	return res, depth
}

// TestInstrumentPreserves: the rewrite changes nothing a module computes.
// features.c uses the instructions of every feature the host enables
// (SIMD lanes, shuffles and lane loads, bulk memory, sign extension,
// saturating conversions, indirect calls, br_table, select); the
// instrumented module returns what the original returns, for several
// inputs. After the call, the budget in use is the frame of the export
// alone: every callee's charge was given back.
func TestInstrumentPreserves(t *testing.T) {
	orig := hostile("features.wasm")
	ins, err := instrument(orig, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if ins.functions == 0 || len(ins.wasm) <= len(orig) {
		t.Fatalf("nothing rewritten: %d functions, %d → %d bytes", ins.functions, len(orig), len(ins.wasm))
	}
	for _, seed := range []uint64{0, 1, 7, 12345, 1 << 31} {
		want, _ := compileAndRun(t, orig, "run", seed)
		got, depth := compileAndRun(t, ins.wasm, "run", seed)
		if got[0] != want[0] {
			t.Errorf("run(%d) = %d instrumented, %d original", seed, got[0], want[0])
		}
		if !slices.Contains(ins.frames, int32(depth)) {
			t.Errorf("run(%d) left %d bytes of budget in use, not one function's frame (frames %v)", seed, depth, ins.frames)
		}
	}
}

// TestInstrumentEveryPlugin: every sample plugin, in every language, and
// every hostile fixture that compiles, still compiles once instrumented
// (TestPluginCases then runs their cases through the instrumented code).
func TestInstrumentEveryPlugin(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2))
	defer rt.Close(ctx)
	var mods [][]byte
	for _, n := range pluginNames() {
		mods = append(mods, readPlugin(t, n))
	}
	entries, err := os.ReadDir(hostileOut)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		mods = append(mods, hostile(e.Name()))
	}
	for i, wasm := range mods {
		if c, err := rt.CompileModule(ctx, wasm); err != nil {
			continue // refused as it is (TestLoadRejects)
		} else {
			c.Close(ctx)
		}
		ins, err := instrument(wasm, 1<<20)
		if err != nil {
			t.Errorf("module %d: %v", i, err)
			continue
		}
		c, err := rt.CompileModule(ctx, ins.wasm)
		if err != nil {
			t.Errorf("module %d: the instrumented module does not compile: %v", i, err)
			continue
		}
		c.Close(ctx)
	}
}

// FuzzInstrument: the rewrite never panics, and what wazero compiles it
// either rewrites into something wazero compiles or refuses.
func FuzzInstrument(f *testing.F) {
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add(hostile("hostile-v1.wasm"))
	f.Add(hostile("features.wasm"))
	f.Add(hostile("imports-BAD_JSON.wasm"))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(api.CoreFeaturesV2).WithCompilationCache(wazero.NewCompilationCache()))
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, b []byte) {
		ins, err := instrument(b, 1<<20)
		if err != nil {
			return
		}
		c, err := rt.CompileModule(ctx, b)
		if err != nil {
			return // invalid input: whatever the rewrite made of it
		}
		c.Close(ctx)
		c, err = rt.CompileModule(ctx, ins.wasm)
		if err != nil {
			t.Fatalf("compiles, but not once instrumented: %v", err)
		}
		c.Close(ctx)
	})
}
