//go:build wasip1

package push2

import "unsafe"

// The raw imports of sdk/ABI.md §5–§9. Pointers are offsets in the module's
// own memory; every buffer is owned by the guest.

//go:wasmimport push2 abi_v1
func abiV1() int32

//go:wasmimport push2 output
func rawOutput(ptr unsafe.Pointer, n int32) int32

//go:wasmimport push2 set_reason
func rawSetReason(ptr unsafe.Pointer, n int32) int32

//go:wasmimport push2 el_find
func rawElFind(parent int32, path unsafe.Pointer, n int32) int32

//go:wasmimport push2 el_child
func rawElChild(parent, index int32) int32

//go:wasmimport push2 el_name
func rawElName(h int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport push2 el_ns
func rawElNS(h int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport push2 el_text
func rawElText(h int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport push2 el_attr
func rawElAttr(h int32, name unsafe.Pointer, nameLen int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport push2 el_xml
func rawElXML(h int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport push2 fact
func rawFact(id int32) int32

//go:wasmimport push2 field
func rawField(id int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport push2 facts
func rawFacts(first, n int32, buf unsafe.Pointer) int32

//go:wasmimport push2 fields
func rawFields(mask int32, buf unsafe.Pointer, n int32) int32

//go:wasmimport push2 now_ms
func rawNowMS() int64

//go:wasmimport push2 log
func rawLog(level int32, ptr unsafe.Pointer, n int32) int32

//go:wasmimport push2 webpush_encrypt
func rawEncrypt(ua unsafe.Pointer, uaLen int32, auth unsafe.Pointer, authLen int32, pt unsafe.Pointer, ptLen int32, out unsafe.Pointer, outLen int32) int32

//go:wasmimport push2 jwt_sign
func rawJWT(alg unsafe.Pointer, algLen int32, key unsafe.Pointer, keyLen int32, claims unsafe.Pointer, claimsLen int32, out unsafe.Pointer, outLen int32) int32
