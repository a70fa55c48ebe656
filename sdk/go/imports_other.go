//go:build !wasip1

package push2

import "unsafe"

// On other platforms the SDK compiles (so that go vet and editors see the
// plugins) but cannot run: the host functions exist only inside push2's
// WebAssembly host. Build plugins with GOOS=wasip1 GOARCH=wasm.

func notWasm() int32 { panic("push2 SDK: build with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared") }

func abiV1() int32                                 { return notWasm() }
func rawOutput(unsafe.Pointer, int32) int32        { return notWasm() }
func rawSetReason(unsafe.Pointer, int32) int32     { return notWasm() }
func rawElFind(int32, unsafe.Pointer, int32) int32 { return notWasm() }
func rawElChild(int32, int32) int32                { return notWasm() }
func rawElName(int32, unsafe.Pointer, int32) int32 { return notWasm() }
func rawElNS(int32, unsafe.Pointer, int32) int32   { return notWasm() }
func rawElText(int32, unsafe.Pointer, int32) int32 { return notWasm() }
func rawElXML(int32, unsafe.Pointer, int32) int32  { return notWasm() }
func rawFact(int32) int32                          { return notWasm() }
func rawField(int32, unsafe.Pointer, int32) int32  { return notWasm() }
func rawNowMS() int64                              { return int64(notWasm()) }
func rawFacts(int32, int32, unsafe.Pointer) int32  { return notWasm() }
func rawFields(int32, unsafe.Pointer, int32) int32 { return notWasm() }
func rawLog(int32, unsafe.Pointer, int32) int32    { return notWasm() }
func rawElAttr(int32, unsafe.Pointer, int32, unsafe.Pointer, int32) int32 {
	return notWasm()
}
func rawEncrypt(unsafe.Pointer, int32, unsafe.Pointer, int32, unsafe.Pointer, int32, unsafe.Pointer, int32) int32 {
	return notWasm()
}
func rawJWT(unsafe.Pointer, int32, unsafe.Pointer, int32, unsafe.Pointer, int32, unsafe.Pointer, int32) int32 {
	return notWasm()
}
