/*
 * imports.c — modules that must not load: compiled with one of
 * -DUNKNOWN_ENV, -DABI_V2, -DNO_GATE, -DUNKNOWN_PUSH2, -DWASI_FS, -DCOMMAND,
 * -DRESERVED_URI, -DBAD_JSON (host/hostile_test.go).
 */
#include "push2.h"

#if defined(UNKNOWN_ENV)
__attribute__((import_module("env"), import_name("getrandom"))) int32_t env_getrandom(void);
#define USE() env_getrandom()
#elif defined(ABI_V2)
__attribute__((import_module("push2"), import_name("abi_v2"))) int32_t push2_abi_v2(void);
#define USE() push2_abi_v2()
#elif defined(UNKNOWN_PUSH2)
__attribute__((import_module("push2"), import_name("teleport"))) int32_t push2_teleport(void);
#define USE() push2_teleport()
#elif defined(WASI_FS)
__attribute__((import_module("wasi_snapshot_preview1"), import_name("path_open"))) int32_t path_open(int32_t, int32_t, int32_t, int32_t, int32_t, int64_t, int64_t, int32_t, int32_t);
#define USE() path_open(0, 0, 0, 0, 0, 0, 0, 0, 0)
#else
#define USE() 0
#endif

#if defined(RESERVED_URI)
#define JSON "{\"profiles\":[{\"uri\":\"urn:xmpp:push2:match:all\",\"kind\":\"match\"}]}"
#elif defined(BAD_JSON)
#define JSON "{\"profiles\":[{\"uri\":"
#else
#define JSON "{\"profiles\":[{\"uri\":\"urn:test:imports\",\"kind\":\"match\"}]}"
#endif

PUSH2_EXPORT("push2_describe") int32_t push2_describe(void) {
#if !defined(NO_GATE) && !defined(ABI_V2)
	push2_abi_v1();
#endif
	(void)USE();
	return push2_output(JSON, (int32_t)sizeof(JSON) - 1);
}

PUSH2_EXPORT("push2_match") int32_t push2_match(int32_t profile) {
	(void)profile;
	return PUSH2_PUSH;
}

#if defined(COMMAND)
PUSH2_EXPORT("_start") void _start(void) {}
#endif
