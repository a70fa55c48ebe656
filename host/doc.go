// Package host runs custom Push 2.0 profiles written as WebAssembly modules
// (DESIGN.md "The WebAssembly ABI — principles"), and makes each of them an
// engine.MatchProfile or engine.SendProfile that the pipeline cannot tell
// from a built-in. The contract with the modules is sdk/ABI.md; every
// section number cited in this package is a section of that file.
//
// The pieces, in the order a module meets them:
//
//   - Host (host.go) is a wazero runtime with the compiler engine and a
//     compilation cache (Config.CacheDir), and one with the interpreter
//     for a large module's first seconds, each with the push2 host
//     functions (hostfuncs.go, sdk/ABI.md §5–§9) and the WASI subset of
//     §12; and one watchdog (watchdog.go) that stops calls at their
//     deadline (§11 "Deadline").
//   - Host.Load checks the version gate and the import allow-list (§1, §2)
//     before compiling, adds the call-stack budget and the deadline checks
//     to the code (instrument.go, §11 "Deadline" and "Call stack"), checks
//     the exports (§3), instantiates the module once and asks
//     push2_describe which profiles it provides. The result is a Module,
//     identified by its content hash.
//   - Module (module.go) runs calls on pooled instances under the sandbox
//     limits of §11: memory cap (each instance's memory its own mapping,
//     memory_linux.go), stack budget, per-call deadline that stops compiled
//     loops and recursion, output caps, calls in flight per module. A
//     failed call (trap, timeout, stack overflow, exhausted memory,
//     malformed output) fails that one evaluation and discards its
//     instance; Config.QuarantineAfter failures in a row, or a
//     Config.QuarantineRate of recent calls, quarantine and release the
//     module until another content hash replaces it.
//   - matchProfile and sendProfile (profiles.go) are the engine interfaces on
//     top of push2_match, push2_validate, push2_send and push2_prepare (§4).
//   - Watcher (watcher.go) hot-loads a directory of *.wasm files (§10),
//     following its file events.
//
// The test cases of §13 are run by package internal/casetest, not here: it
// needs the built-in profiles, and host imports only engine and wazero. The
// Watcher calls it through WatcherConfig.Verify.
//
// Crypto host functions call the Crypto the Config holds; push2d wires the
// implementation of package profiles/webpush. The ABI's numbers (status
// codes, handles, fact and field ids, result bits, limits) live in
// host/internal/abi: modules and this package share them, embedders never
// see them.
package host
