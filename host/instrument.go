package host

import (
	"errors"
	"fmt"
	"strings"
)

// The load-time rewrite behind the call-stack limit and the call deadline
// (sdk/ABI.md §11 "Call stack" and "Deadline", rationale there and in §14).
//
// wazero grows a compiled guest's native stack in Go code, doubling and
// copying it, up to about 100 MB per call, and its own deadline machinery
// (close-on-context-done) costs a goroutine per call and an indirect call to
// a check trampoline on every loop back-edge, yet never stops a loop-free
// tree recursion (f calls f twice), which has no back-edge. None of this is
// configurable in wazero 1.12, so the host rewrites every module before
// compiling it and runs it with close-on-context-done off:
//
//   - Three mutable i32 globals are appended: the stack budget in use
//     (depth), the stop flag and a countdown (ticks). depth and stop are
//     exported (stackExport, stopExport) so that the host can reset depth
//     before each call and read it after a trap, and so that the host's
//     watchdog (watchdog.go) can raise the stop flag of an instance whose
//     call passed its deadline.
//   - Every loop header and the entry of every defined function that
//     calls another (a function that calls none cannot recurse) count ticks
//     down: a load, a decrement, a store and a branch not taken, inline,
//     where wazero's check is a call into Go. Every yieldEvery ticks the
//     guest executes memory.grow 0, which wazero runs in Go: there the Go
//     scheduler can preempt the goroutine (compiled guest code cannot be
//     preempted, so guests on every P would otherwise starve the watchdog),
//     and then, after an empty loop (where wazero's interpreter, which
//     serves a module until its compile is done, checks its own deadline),
//     it tests the stop flag: raised, it traps (unreachable),
//     which the host reports as the timeout it is. Between two ticks a
//     guest runs straight-line code of one function body, so a loop-free
//     tree recursion is stopped as surely as a loop.
//   - Every defined function gets one extra i32 local and a prologue that
//     adds the function's estimated frame size to depth, remembers the sum
//     in the extra local, and traps (unreachable) when it exceeds the
//     budget.
//   - After every call to a defined function (call, call_indirect) depth is
//     set back from the extra local. A callee only leaves by returning or by
//     trapping (tail calls and exceptions are not enabled, see New), and an
//     instance that trapped is discarded, so depth is exact. Calls to
//     imported functions need no restore: host functions never call back
//     into the guest.
//
// Function, global and type indices of the module are unchanged (new globals
// and the new local come last), so the element, data, start, export and name
// sections stay valid. DWARF sections, whose code offsets the rewrite would
// falsify, are dropped.

const (
	// stackExport and stopExport are the export names of the depth global
	// and of the stop flag. The colon keeps them apart from any name a
	// toolchain derives from a source identifier.
	stackExport = "push2-host:stack"
	stopExport  = "push2-host:stop"
	// frameBase and slotBytes estimate a frame of wazero's compiled code:
	// return address, frame pointer and spill area for each parameter and
	// local (v128 counts twice). wazero 1.12 on amd64 uses 48 bytes for a
	// one-parameter function with no locals; the estimate gives 64.
	frameBase = 48
	slotBytes = 8
	// yieldEvery is how many ticks pass between two visits to Go (and
	// tests of the stop flag). A visit costs about as much as a few hundred
	// ticks; between two, a guest runs yieldEvery function bodies or loop
	// iterations at most, microseconds.
	yieldEvery = 1024
)

// Section ids of the binary format, and their required order.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secCode      = 10
	secDataCount = 12
	secTag       = 13
)

var sectionRank = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// instrumented is the result of instrument: the rewritten binary and what
// the host needs to know about it.
type instrumented struct {
	wasm      []byte
	functions int     // defined functions rewritten
	frames    []int32 // the estimated frame of each, in bytes
}

// instrument rewrites wasm as described above, with a stack budget of limit
// bytes. It validates only what it walks; wazero validates the result. An
// error means the module uses something the rewrite does not know (a
// feature the host does not enable) or is malformed.
func instrument(wasm []byte, limit uint32) (*instrumented, error) {
	secs, err := readSections(wasm)
	if err != nil {
		return nil, err
	}

	var (
		types           []funcType
		funcTypes       []uint32
		importedFuncs   uint32
		importedGlobals uint32
		definedGlobals  uint32
		memories        uint32
		haveCode        bool
		globalSec       = -1
	)
	for i, s := range secs {
		b := &byteReader{b: s.body}
		var err error
		switch s.id {
		case secType:
			types, err = readTypes(b)
		case secImport:
			importedFuncs, importedGlobals, memories, err = countImports(b)
		case secFunction:
			funcTypes, err = readU32Vec(b)
		case secMemory:
			var n uint32
			n, err = b.u32()
			memories += n
		case secGlobal:
			globalSec = i
			definedGlobals, err = b.u32()
		case secExport:
			err = checkExportNames(b, stackExport, stopExport)
		case secCode:
			haveCode = true
		case secTag:
			return nil, errors.New("declares exception tags; exception handling is not enabled")
		}
		if err != nil {
			return nil, err
		}
	}
	if !haveCode {
		return &instrumented{wasm: wasm}, nil
	}
	depth := importedGlobals + definedGlobals
	stop, ticks := depth+1, depth+2

	// Globals: three mutable i32, depth and stop at 0, ticks at yieldEvery.
	zero := []byte{0x7f, 0x01, 0x41, 0x00, 0x0b}
	newGlobals := append(append([]byte{}, zero...), zero...)
	newGlobals = append(appendS32(append(newGlobals, 0x7f, 0x01, 0x41), yieldEvery), 0x0b)
	if globalSec >= 0 {
		b := &byteReader{b: secs[globalSec].body}
		_, _ = b.u32()
		body := appendU32(nil, definedGlobals+3)
		body = append(body, b.b[b.off:]...)
		secs[globalSec].body = append(body, newGlobals...)
	} else {
		secs = insertSection(secs, section{id: secGlobal, body: append(appendU32(nil, 3), newGlobals...)})
	}
	exp := appendU32(append(appendName(nil, stackExport), 0x03), depth)
	exp = appendU32(append(appendName(exp, stopExport), 0x03), stop)
	if expSc := indexOf(secs, secExport); expSc >= 0 {
		b := &byteReader{b: secs[expSc].body}
		n, _ := b.u32()
		body := appendU32(nil, n+2)
		body = append(body, b.b[b.off:]...)
		secs[expSc].body = append(body, exp...)
	} else {
		secs = insertSection(secs, section{id: secExport, body: append(appendU32(nil, 2), exp...)})
	}

	out := &instrumented{}
	for i, s := range secs {
		if s.id != secCode {
			continue
		}
		rw := rewriter{importedFuncs: importedFuncs, depth: depth, stop: stop, ticks: ticks, memory: memories > 0, limit: limit}
		body, err := rw.code(s.body, funcTypes, types)
		if err != nil {
			return nil, err
		}
		secs[i].body, out.functions, out.frames = body, len(rw.frames), rw.frames
	}

	buf := make([]byte, 0, len(wasm)+len(wasm)/8+64)
	buf = append(buf, wasm[:8]...)
	for _, s := range secs {
		if s.id == secCustom && isDebugSection(s.body) {
			continue
		}
		buf = append(buf, s.id)
		buf = appendU32(buf, uint32(len(s.body)))
		buf = append(buf, s.body...)
	}
	out.wasm = buf
	return out, nil
}

func indexOf(secs []section, id byte) int {
	for i, s := range secs {
		if s.id == id {
			return i
		}
	}
	return -1
}

// insertSection puts s before the first known section that must follow it.
func insertSection(secs []section, s section) []section {
	rank := sectionRank[s.id]
	for i, o := range secs {
		if o.id != secCustom && sectionRank[o.id] > rank {
			return append(secs[:i], append([]section{s}, secs[i:]...)...)
		}
	}
	return append(secs, s)
}

func isDebugSection(body []byte) bool {
	b := &byteReader{b: body}
	name, err := b.name()
	return err == nil && (strings.HasPrefix(name, ".debug_") || name == "sourceMappingURL" || name == "external_debug_info")
}

// valueSlots is how many 8-byte slots a value of type t takes in a frame.
func valueSlots(t byte) (int, error) {
	switch t {
	case 0x7f, 0x7e, 0x7d, 0x7c, 0x70, 0x6f: // i32 i64 f32 f64 funcref externref
		return 1, nil
	case 0x7b: // v128
		return 2, nil
	}
	return 0, fmt.Errorf("value type 0x%02x is not enabled", t)
}

// funcType is what the rewrite needs of a function type: how many
// parameters (they are numbered before the locals) and how many frame slots
// they take.
type funcType struct{ params, slots int }

func readTypes(b *byteReader) ([]funcType, error) {
	n, err := b.u32()
	if err != nil {
		return nil, err
	}
	out := make([]funcType, 0, min(n, 1<<16))
	for i := uint32(0); i < n; i++ {
		form, err := b.byte()
		if err != nil {
			return nil, err
		}
		if form != 0x60 {
			return nil, fmt.Errorf("type %d has form 0x%02x, not a function type", i, form)
		}
		var ft funcType
		for j := 0; j < 2; j++ { // parameters, then results
			k, err := b.u32()
			if err != nil {
				return nil, err
			}
			for ; k > 0; k-- {
				t, err := b.byte()
				if err != nil {
					return nil, err
				}
				s, err := valueSlots(t)
				if err != nil {
					return nil, err
				}
				if j == 0 {
					ft.params++
					ft.slots += s
				}
			}
		}
		out = append(out, ft)
	}
	return out, nil
}

func countImports(b *byteReader) (funcs, globals, memories uint32, err error) {
	n, err := b.u32()
	if err != nil {
		return 0, 0, 0, err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := b.name(); err != nil {
			return 0, 0, 0, err
		}
		if _, err := b.name(); err != nil {
			return 0, 0, 0, err
		}
		kind, err := b.byte()
		if err != nil {
			return 0, 0, 0, err
		}
		switch kind {
		case 0:
			funcs++
		case 2:
			memories++
		case 3:
			globals++
		}
		if err := b.skipImportDesc(kind); err != nil {
			return 0, 0, 0, err
		}
	}
	return funcs, globals, memories, nil
}

func readU32Vec(b *byteReader) ([]uint32, error) {
	n, err := b.u32()
	if err != nil {
		return nil, err
	}
	if int(n) > len(b.b)-b.off {
		return nil, errTruncated
	}
	out := make([]uint32, n)
	for i := range out {
		if out[i], err = b.u32(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func checkExportNames(b *byteReader, reserved ...string) error {
	n, err := b.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		name, err := b.name()
		if err != nil {
			return err
		}
		for _, r := range reserved {
			if name == r {
				return fmt.Errorf("exports %q, a name the host reserves", r)
			}
		}
		if _, err := b.byte(); err != nil {
			return err
		}
		if _, err := b.u32(); err != nil {
			return err
		}
	}
	return nil
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// appendS32 appends v as a signed LEB128 (an i32.const immediate).
func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}

// rewriter rewrites the code section.
type rewriter struct {
	importedFuncs uint32
	depth, stop   uint32 // global indices
	ticks         uint32
	memory        bool // the module has a memory, for the yield
	calls         bool // the function being rewritten calls a defined function
	limit         uint32
	frames        []int32
}

// maxLocals bounds the locals of one function, as wazero does (it refuses
// more than 50,000), so the slot arithmetic cannot overflow.
const maxLocals = 50_000

func (rw *rewriter) code(sec []byte, funcTypes []uint32, types []funcType) ([]byte, error) {
	b := &byteReader{b: sec}
	n, err := b.u32()
	if err != nil {
		return nil, err
	}
	if int(n) != len(funcTypes) {
		return nil, fmt.Errorf("code section has %d bodies for %d functions", n, len(funcTypes))
	}
	out := appendU32(make([]byte, 0, len(sec)+int(n)*48), n)
	var body []byte
	for i := uint32(0); i < n; i++ {
		size, err := b.u32()
		if err != nil {
			return nil, err
		}
		if int(size) > len(b.b)-b.off {
			return nil, errTruncated
		}
		fb := &byteReader{b: b.b[b.off : b.off+int(size)]}
		b.off += int(size)
		t := funcTypes[i]
		if int(t) >= len(types) {
			return nil, fmt.Errorf("function %d has unknown type %d", rw.importedFuncs+i, t)
		}
		body, err = rw.function(body[:0], fb, types[t])
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", rw.importedFuncs+i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, nil
}

// function rewrites one body: the extra local, the prologue, and the depth
// restore after each call.
func (rw *rewriter) function(out []byte, b *byteReader, ft funcType) ([]byte, error) {
	groups, err := b.u32()
	if err != nil {
		return nil, err
	}
	start := b.off
	locals, slots := uint64(0), uint64(ft.slots)
	for g := uint32(0); g < groups; g++ {
		k, err := b.u32()
		if err != nil {
			return nil, err
		}
		t, err := b.byte()
		if err != nil {
			return nil, err
		}
		s, err := valueSlots(t)
		if err != nil {
			return nil, err
		}
		locals += uint64(k)
		if locals > maxLocals {
			return nil, fmt.Errorf("more than %d locals", maxLocals)
		}
		slots += uint64(k) * uint64(s)
	}
	saved := uint32(uint64(ft.params) + locals) // the extra local's index
	out = appendU32(out, groups+1)
	out = append(out, b.b[start:b.off]...)
	out = append(out, 0x01, 0x7f) // one i32

	frame := int32(frameBase + slotBytes*(slots+1))
	rw.frames = append(rw.frames, frame)
	entry := len(out) // where the tick goes, if the body calls
	// saved = depth + frame; depth = saved; trap if over the budget.
	out = rw.global(out, 0x23, rw.depth)
	out = append(out, 0x41)
	out = appendS32(out, frame)
	out = append(out, 0x6a, 0x22) // i32.add, local.tee saved
	out = appendU32(out, saved)
	out = rw.global(out, 0x24, rw.depth)
	out = append(out, 0x20) // local.get saved
	out = appendU32(out, saved)
	out = append(out, 0x41)
	out = appendS32(out, int32(rw.limit))
	out = append(out, 0x4b, 0x04, 0x40, 0x00, 0x0b) // i32.gt_u, if, unreachable, end

	rw.calls = false
	out, err = rw.expr(out, b, saved)
	if err != nil || !rw.calls {
		// A function that calls nothing needs no tick at its entry: it
		// cannot recurse, and its loops tick themselves.
		return out, err
	}
	t := rw.tick(nil)
	out = append(out, t...)
	copy(out[entry+len(t):], out[entry:len(out)-len(t)])
	copy(out[entry:], t)
	return out, nil
}

// tick appends the countdown of instrument's doc: ticks -= 1, and when it
// reaches 0: ticks = yieldEvery, memory.grow 0 (a visit to Go), trap if the
// stop flag is raised. It leaves the operand stack as it found it, so it
// fits at a function's entry and at the top of a loop of any block type.
func (rw *rewriter) tick(out []byte) []byte {
	out = rw.global(out, 0x23, rw.ticks)
	out = append(out, 0x41, 0x7f, 0x6a) // i32.const -1, i32.add
	out = rw.global(out, 0x24, rw.ticks)
	out = rw.global(out, 0x23, rw.ticks)
	out = append(out, 0x45, 0x04, 0x40, 0x41) // i32.eqz, if, i32.const
	out = appendS32(out, yieldEvery)
	out = rw.global(out, 0x24, rw.ticks)
	if rw.memory {
		out = append(out, 0x41, 0x00, 0x40, 0x00, 0x1a) // i32.const 0, memory.grow 0, drop
	}
	out = append(out, 0x03, 0x40, 0x0b) // loop end: where the interpreter checks its deadline
	out = rw.global(out, 0x23, rw.stop)
	return append(out, 0x04, 0x40, 0x00, 0x0b, 0x0b) // if, unreachable, end, end
}

func (rw *rewriter) global(out []byte, op byte, idx uint32) []byte {
	return appendU32(append(out, op), idx)
}

// expr copies the instructions of a body, adding the depth restore after
// calls and the tick at the top of every loop. It decodes every instruction of the features the host enables
// (wazero's CoreFeaturesV2: MVP, mutable globals, sign extension,
// non-trapping conversions, multi-value, bulk memory, reference types,
// SIMD) to find the calls, and refuses any other opcode.
func (rw *rewriter) expr(out []byte, b *byteReader, saved uint32) ([]byte, error) {
	restore := func() {
		out = append(out, 0x20)
		out = appendU32(out, saved)
		out = rw.global(out, 0x24, rw.depth)
	}
	depth := 1 // open blocks, the function's own included
	for depth > 0 {
		at := b.off
		op, err := b.byte()
		if err != nil {
			return nil, err
		}
		call, loop := false, false
		switch {
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if: block type
			depth++
			err = b.skipLEB(5)
			loop = op == 0x03
		case op == 0x0b: // end
			depth--
		case op == 0x0c || op == 0x0d: // br, br_if
			err = b.skipLEB(5)
		case op == 0x0e: // br_table
			var n uint32
			if n, err = b.u32(); err == nil {
				for i := uint32(0); i <= n && err == nil; i++ {
					err = b.skipLEB(5)
				}
			}
		case op == 0x10: // call
			var f uint32
			f, err = b.u32()
			call = f >= rw.importedFuncs
		case op == 0x11: // call_indirect: type, table
			if err = b.skipLEB(5); err == nil {
				err = b.skipLEB(5)
			}
			call = true
		case op == 0x1c: // select t*
			var n uint32
			if n, err = b.u32(); err == nil {
				err = b.skip(int(n))
			}
		case op >= 0x20 && op <= 0x26: // local.*, global.*, table.get/set
			err = b.skipLEB(5)
		case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
			if err = b.skipLEB(5); err == nil {
				err = b.skipLEB(5)
			}
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			err = b.skipLEB(5)
		case op == 0x41:
			err = b.skipLEB(5)
		case op == 0x42:
			err = b.skipLEB(10)
		case op == 0x43:
			err = b.skip(4)
		case op == 0x44:
			err = b.skip(8)
		case op == 0xd0: // ref.null t
			_, err = b.byte()
		case op == 0xd2: // ref.func
			err = b.skipLEB(5)
		case op == 0xfc:
			err = skipMisc(b)
		case op == 0xfd:
			err = skipSIMD(b)
		case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0f || op == 0x1a || op == 0x1b ||
			(op >= 0x45 && op <= 0xc4) || op == 0xd1:
			// no immediates
		default:
			return nil, fmt.Errorf("opcode 0x%02x at byte %d is not enabled in this host", op, at)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b.b[at:b.off]...)
		if call {
			restore()
			rw.calls = true
		}
		if loop {
			out = rw.tick(out)
		}
	}
	if b.off != len(b.b) {
		return nil, errors.New("bytes after the end of the function body")
	}
	return out, nil
}

// skipMisc skips a 0xFC-prefixed instruction (saturating conversions, bulk
// memory, table operations).
func skipMisc(b *byteReader) error {
	sub, err := b.u32()
	if err != nil {
		return err
	}
	imms := 0
	switch {
	case sub <= 7: // trunc_sat
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		imms = 2
	case sub == 9, sub == 11, sub == 13, sub >= 15 && sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		imms = 1
	default:
		return fmt.Errorf("instruction 0xfc %d is not enabled in this host", sub)
	}
	for ; imms > 0; imms-- {
		if err := b.skipLEB(5); err != nil {
			return err
		}
	}
	return nil
}

// skipSIMD skips a 0xFD-prefixed (fixed-width SIMD) instruction.
func skipSIMD(b *byteReader) error {
	sub, err := b.u32()
	if err != nil {
		return err
	}
	memarg := func() error {
		if err := b.skipLEB(5); err != nil {
			return err
		}
		return b.skipLEB(5)
	}
	switch {
	case sub <= 11 || sub == 92 || sub == 93: // loads, store, load_zero
		return memarg()
	case sub == 12 || sub == 13: // v128.const, i8x16.shuffle
		return b.skip(16)
	case sub >= 21 && sub <= 34: // extract_lane, replace_lane
		return b.skip(1)
	case sub >= 84 && sub <= 91: // load_lane, store_lane
		if err := memarg(); err != nil {
			return err
		}
		return b.skip(1)
	case sub <= 255: // the rest take no immediate
		return nil
	}
	return fmt.Errorf("instruction 0xfd %d is not enabled in this host", sub)
}

// skipLEB skips one LEB128 number of at most maxBytes bytes.
func (r *byteReader) skipLEB(maxBytes int) error {
	for i := 0; i < maxBytes; i++ {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
	}
	return errors.New("malformed LEB128 integer")
}

func (r *byteReader) skip(n int) error {
	if n < 0 || n > len(r.b)-r.off {
		return errTruncated
	}
	r.off += n
	return nil
}
