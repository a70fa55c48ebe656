/*
 * hostile.c — a module that misbehaves on request, for the sandbox tests
 * (host/hostile_test.go). The registration picks the behaviour: the text of
 * <mode xmlns='urn:test:hostile'/> in <match/> (for push2_match) or in
 * <send/> (for push2_send). -DVERSION=n changes the content hash only.
 */
#include "push2.h"

#ifndef VERSION
#define VERSION 1
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

PUSH2_DESCRIBE("{\"version\":" STR(VERSION) ",\"profiles\":[{\"uri\":\"urn:test:hostile:match\",\"kind\":\"match\"},{\"uri\":\"urn:test:hostile:send\",\"kind\":\"send\"}]}")

/* WASI fd_write, to check that stdout and stderr become log lines. */
struct ciovec {
	const char *buf;
	uint32_t len;
};
__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write"))) int32_t fd_write(int32_t fd, const struct ciovec *iov, int32_t n, uint32_t *written);

static char mode[64];
volatile int32_t sink;

static bool is(const char *m) {
	int32_t n = push2_strlen(m);
	return n == push2_strlen(mode) && memcmp(mode, m, (size_t)n) == 0;
}

static void read_mode(push2_el parent) {
	mode[0] = 0;
	push2_el e = push2_find(parent, "{urn:test:hostile}mode");
	if (e > 0) push2_text(e, mode, sizeof mode);
}

/* recurse uses only scalar locals (no shadow stack), so the overflow is
 * wazero's native stack, and its result feeds a non-associative expression so
 * the optimizer cannot turn it into a loop. */
__attribute__((noinline)) static int32_t recurse(int32_t n) {
	if (sink == -12345) return 0; /* never: keeps -Winfinite-recursion quiet */
	sink = n;
	return recurse(n + 1) * 3 + n;
}

/* fib is a tree recursion without a loop, so that no loop back-edge (where
 * wazero checks the deadline) ever runs: fib(42) makes 8.7e8 calls, seconds
 * of work. The combination of the two results keeps the optimizer from
 * turning either call into a loop. */
__attribute__((noinline)) static int32_t fib(int32_t n) {
	if (n < 2) return n;
	int32_t a = fib(n - 1);
	return (a << 1) ^ (fib(n - 2) - a);
}

/* deep recurses n levels and returns: a recursion a real profile may do
 * (a nested structure), which the call-stack budget must allow. */
__attribute__((noinline)) static int32_t deep(int32_t n) {
	if (n == 0) return sink;
	return deep(n - 1) * 3 + n;
}

#ifdef SLOW_INIT
/* _initialize spins once the host clock says 2033 or later: the tests move
 * the clock forward after the module loaded, so that only instances created
 * later, for an evaluation, spin. */
PUSH2_EXPORT("_initialize") void _initialize(void) {
	if (push2_now_ms() > 2000000000000LL) {
		for (;;) sink++;
	}
}
#endif

/* misbehave runs the shared failure modes; it returns only for the others. */
static void misbehave(void) {
	if (is("loop")) {
		for (;;) sink++;
	}
	if (is("grow")) {
		for (;;) {
			if (__builtin_wasm_memory_grow(0, 16) == (size_t)-1) __builtin_trap(); /* like an allocator: out of memory is fatal */
		}
	}
	if (is("trap")) __builtin_trap();
	if (is("recurse")) sink = recurse(0);
	if (is("fib")) sink = fib(42);
	if (is("deep")) sink = deep(5000);
	if (is("grow-ok")) {
		/* Grows by 20 MiB, writes to every 4 KiB page of it (so that it
		 * is resident), and succeeds: an instance that is fine but large
		 * afterwards. */
		size_t old = __builtin_wasm_memory_grow(0, 320);
		if (old == (size_t)-1) __builtin_trap();
		for (volatile char *p = (char *)(old * 65536); p < (char *)((old + 320) * 65536); p += 4096) *p = 1;
	}
	if (is("badptr")) {
		/* Pointers outside memory get PUSH2_INVALID, not a host crash. */
		char *far = (char *)0x7ffffff0;
		if (push2_el_xml(PUSH2_STANZA, far, 4096) != PUSH2_INVALID) __builtin_trap();
		if (push2_el_find(PUSH2_STANZA, far, 100) != PUSH2_INVALID) __builtin_trap();
		if (push2_output(far, 100) != PUSH2_INVALID && push2_output(far, 100) != PUSH2_UNAVAILABLE) __builtin_trap();
		if (push2_el_text(12345, mode, sizeof mode) != PUSH2_INVALID) __builtin_trap();
	}
	if (is("stdout")) {
		static const char msg[] = "hello from stdout\npartial";
		struct ciovec iov = {msg, sizeof msg - 1};
		uint32_t w;
		fd_write(1, &iov, 1, &w);
		static const char err[] = "and stderr\n";
		struct ciovec iov2 = {err, sizeof err - 1};
		fd_write(2, &iov2, 1, &w);
	}
	if (is("log-flood")) {
		for (int i = 0; i < 1000; i++) push2_logs(PUSH2_INFO, "flood");
	}
}

PUSH2_EXPORT("push2_match") int32_t push2_match(int32_t profile) {
	(void)profile;
	read_mode(PUSH2_MATCH);
	misbehave();
	if (is("count")) {
		/* 1000 loop iterations: what a loop back-edge costs (BenchmarkGuestLoop). */
		for (int32_t i = 0; i < 1000; i++) sink = i;
	}
	if (is("calls")) {
		/* fib(15): 1973 calls, what a function entry costs
		 * (BenchmarkGuestCalls). */
		sink = fib(15);
	}
	if (is("batch")) {
		/* push2.facts and push2.fields (sdk/ABI.md §7 "Batched reads")
		 * agree with push2.fact and push2.field, id for id, unknown ids
		 * and statuses included; a size query writes nothing. */
		int32_t v[PUSH2_FACT_COUNT + 3];
		if (push2_facts(0, PUSH2_FACT_COUNT + 3, v) != PUSH2_OK) __builtin_trap();
		for (int32_t id = 0; id < PUSH2_FACT_COUNT + 3; id++)
			if (v[id] != push2_fact(id)) __builtin_trap();
		if (push2_facts(1, 65, v) != PUSH2_INVALID) __builtin_trap();
		if (push2_facts(1, 2, (int32_t *)0x7ffffff0) != PUSH2_INVALID) __builtin_trap();
		static char rec[8192], one[4096];
		int32_t mask = 0x7fe | (1 << 20); /* fields 1..10 and an unknown one */
		int32_t n = push2_fields(mask, rec, 0);
		if (n <= 0 || n > (int32_t)sizeof rec) __builtin_trap();
		if (push2_fields(mask, rec, sizeof rec) != n) __builtin_trap();
		int32_t at = 0;
		for (int32_t id = 1; id < 32; id++) {
			if (!(mask & (1 << id))) continue;
			int32_t l;
			memcpy(&l, rec + at, 4);
			at += 4;
			int32_t m = push2_field(id, one, sizeof one);
			if (l != m) __builtin_trap();
			if (l > 0) {
				if (memcmp(rec + at, one, (size_t)l) != 0) __builtin_trap();
				at += l;
			}
		}
		if (at != n) __builtin_trap();
		if (push2_fields(1, rec, sizeof rec) != PUSH2_INVALID) __builtin_trap();
	}
	if (is("bits")) return 0x100; /* undefined bits in the result word */
	if (is("guest-error")) return push2_fail("the guest refuses");
	return PUSH2_PUSH | PUSH2_PRIORITY_NORMAL;
}

PUSH2_EXPORT("push2_send") int32_t push2_send(int32_t profile) {
	(void)profile;
	read_mode(PUSH2_SEND);
	misbehave();
	if (is("garbage")) return push2_puts("<<<this is not xml");
	if (is("push2ns")) return push2_puts("<client xmlns='urn:xmpp:push2:0'>spoofed</client>");
	if (is("big")) {
		/* Well-formed, but beyond the notification budget (3000 bytes in
		 * the tests). */
		push2_puts("<big xmlns='urn:test:hostile'>");
		for (int i = 0; i < 32; i++) push2_puts("0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789");
		return push2_puts("</big>");
	}
	if (is("flood")) {
		/* Ignores PUSH2_TOO_LARGE and keeps writing. */
		for (int i = 0; i < 10000; i++) push2_puts("<x xmlns='urn:test:hostile'/>");
		return PUSH2_OK;
	}
	return push2_puts("<ok xmlns='urn:test:hostile'/>");
}

/* push2_validate (sdk/ABI.md §3): "validate-loop" never returns, so that
 * the tests can check that the context of a client's <enable/> cancels the
 * call; every other <match/> is accepted. */
PUSH2_EXPORT("push2_validate") int32_t push2_validate(int32_t profile) {
	(void)profile;
	read_mode(PUSH2_MATCH);
	if (is("validate-loop")) {
		for (;;) sink++;
	}
	return PUSH2_OK;
}
