/*
 * features.c — exercises the instructions of every feature the host enables
 * (SIMD, bulk memory, sign extension, saturating conversions, multi-value
 * via clang's ABI, indirect calls, br_table), for TestInstrumentPreserves:
 * the instrumented module must compute what the original computes. Built
 * with -msimd128 -mnontrapping-fptoint -msign-ext; no push2 import, so it is
 * run with plain wazero, not loaded as a profile.
 */
#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT(n) __attribute__((export_name(n)))

static uint8_t buf[256];
volatile int32_t sink;

typedef int32_t (*op)(int32_t, int32_t);
__attribute__((noinline)) static int32_t add(int32_t a, int32_t b) { return a + b; }
__attribute__((noinline)) static int32_t mul(int32_t a, int32_t b) { return a * b; }
__attribute__((noinline)) static int32_t sub(int32_t a, int32_t b) { return a - b; }
static op ops[3] = {add, mul, sub};

__attribute__((noinline)) static int32_t pick(int32_t k, int32_t x) {
	switch (k & 7) { /* a br_table */
	case 0: return x + 11;
	case 1: return x * 13;
	case 2: return x ^ 0x5555;
	case 3: return x >> 3;
	case 4: return -x;
	case 5: return x - 1000;
	default: return x;
	}
}

__attribute__((noinline)) static int64_t wide(int64_t a, double d, float f) {
	int8_t s = (int8_t)a;   /* sign extension */
	int32_t t = (int32_t)d; /* saturating with -mnontrapping-fptoint */
	return (int64_t)s * 7 + t + (int64_t)f;
}

__attribute__((noinline)) static int32_t simd(int32_t seed) {
	v128_t a = wasm_i32x4_make(seed, seed + 1, seed + 2, seed + 3);
	v128_t b = wasm_i32x4_const(5, 6, 7, 8);
	v128_t c = wasm_i32x4_add(wasm_i32x4_mul(a, b), wasm_i32x4_splat(seed));
	v128_t d = wasm_i8x16_shuffle(c, b, 0, 17, 2, 19, 4, 21, 6, 23, 8, 25, 10, 27, 12, 29, 14, 31);
	wasm_v128_store(buf, d);
	v128_t e = wasm_v128_load(buf + 16);
	e = wasm_v128_load32_lane(buf, e, 2);
	wasm_v128_store64_lane(buf + 32, e, 1);
	v128_t z = wasm_v128_load32_zero(buf + 4);
	return wasm_i32x4_extract_lane(d, 0) ^ wasm_i32x4_extract_lane(e, 2) ^ wasm_i32x4_extract_lane(z, 0) ^
	       (int32_t)wasm_i8x16_extract_lane(c, 5) ^ wasm_i32x4_extract_lane(wasm_i32x4_replace_lane(c, 3, 99), 3);
}

__attribute__((noinline)) static int32_t rec(int32_t n) { return n <= 0 ? 1 : rec(n - 1) * 3 + ops[n % 3](n, 2); }

EXPORT("run") int32_t run(int32_t seed) {
	__builtin_memset(buf, seed & 0xff, sizeof buf);                /* memory.fill */
	__builtin_memcpy(buf + 64, buf, 64);                           /* memory.copy */
	int32_t acc = 0;
	for (int32_t i = 0; i < 40; i++) {
		acc = ops[(acc ^ i) % 3 < 0 ? 0 : (acc ^ i) % 3](acc, i); /* call_indirect */
		acc = pick(acc + i, acc);
		acc ^= (int32_t)wide(acc, (double)acc * 1e12, (float)i);
		acc += simd(acc + i);
		acc = (acc > i) ? acc : i - acc; /* select */
	}
	return acc + rec(10) + buf[70];
}
