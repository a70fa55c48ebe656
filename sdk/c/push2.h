/*
 * push2.h — the C SDK for push2 WebAssembly profiles, ABI v1 (sdk/ABI.md).
 *
 * Header only, no libc: include it in exactly one translation unit and build
 *
 *   clang --target=wasm32 -O2 -ffreestanding -nostdlib -mbulk-memory \
 *         -Wl,--no-entry -Wl,--export-dynamic -Wl,-z,stack-size=65536 \
 *         -I sdk/c -o plugin.wasm plugin.c
 *
 * A plugin declares its profiles with PUSH2_DESCRIBE and defines the exports
 * it needs (sdk/ABI.md §3):
 *
 *   PUSH2_DESCRIBE("{\"profiles\":[{\"uri\":\"urn:example:x:0\",\"kind\":\"match\"}]}")
 *   PUSH2_EXPORT("push2_match") int32_t push2_match(int32_t profile) { ... }
 *
 * Every buffer belongs to the guest: functions that return bytes take a
 * buffer and its capacity and return the size the value needs (sdk/ABI.md
 * §4). If that exceeds the capacity nothing was written: retry bigger. A
 * negative result is a status (PUSH2_NOT_FOUND, ...).
 */
#ifndef PUSH2_H
#define PUSH2_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>

#define PUSH2_IMPORT(name) __attribute__((import_module("push2"), import_name(name)))
#define PUSH2_EXPORT(name) __attribute__((export_name(name)))

/* Status codes (sdk/ABI.md §5). */
#define PUSH2_OK 0
#define PUSH2_NOT_FOUND (-1)
#define PUSH2_INVALID (-2)
#define PUSH2_TOO_LARGE (-3)
#define PUSH2_FAILED (-4)
#define PUSH2_UNAVAILABLE (-5)
#define PUSH2_RATE_LIMITED (-6)

/* Predefined element handles (sdk/ABI.md §6). */
typedef int32_t push2_el;
#define PUSH2_STANZA 1
#define PUSH2_MATCH 2
#define PUSH2_SEND 3
#define PUSH2_MESSAGE 4

/* Match result word (sdk/ABI.md §4). */
#define PUSH2_PUSH 1
#define PUSH2_PRIORITY_LOW (1 << 1)
#define PUSH2_PRIORITY_NORMAL (2 << 1)
#define PUSH2_PRIORITY_HIGH (3 << 1)
#define PUSH2_VOIP 8

/* Facts (sdk/ABI.md §7). */
#define PUSH2_FACT_KIND 1
#define PUSH2_FACT_HAS_BODY 2
#define PUSH2_FACT_ENCRYPTED 3
#define PUSH2_FACT_CALL 4
#define PUSH2_FACT_CHAT_STATE 5
#define PUSH2_FACT_RECEIPT 6
#define PUSH2_FACT_CORRECTION 7
#define PUSH2_FACT_SENT_CARBON 8
#define PUSH2_FACT_HEADLINE 9
#define PUSH2_FACT_ERROR 10
#define PUSH2_FACT_REFLECTION 11
#define PUSH2_FACT_GROUPCHAT 12
#define PUSH2_FACT_INVITE 13
#define PUSH2_FACT_MENTION 14
#define PUSH2_FACT_REPLY 15
#define PUSH2_FACT_CONTENT_ONLY 16
#define PUSH2_FACT_IMPORTANT 17
#define PUSH2_FACT_SUGGESTED_PRIORITY 18
#define PUSH2_FACT_TRIGGER 19
#define PUSH2_FACT_DECISION_PRIORITY 20
#define PUSH2_FACT_DECISION_VOIP 21
#define PUSH2_FACT_BUDGET 22
/* The highest fact id this header knows: push2_facts(1, PUSH2_FACT_COUNT, v)
 * reads every fact in one host call into v[0 .. PUSH2_FACT_COUNT-1]
 * (v[id-1] is fact id), sdk/ABI.md §7 "Batched reads". */
#define PUSH2_FACT_COUNT 22

#define PUSH2_CALL_NONE 0
#define PUSH2_CALL_PROPOSE 1
#define PUSH2_CALL_RETRACT 2
#define PUSH2_CALL_OTHER 3

/* Fields (sdk/ABI.md §7). */
#define PUSH2_FIELD_ACCOUNT 1
#define PUSH2_FIELD_TRIGGER 2
#define PUSH2_FIELD_ARCHIVE_ID 3
#define PUSH2_FIELD_NICK 4
#define PUSH2_FIELD_FROM 5
#define PUSH2_FIELD_CHAT 6
#define PUSH2_FIELD_BODY 7
#define PUSH2_FIELD_TYPE 8
#define PUSH2_FIELD_PROFILE 9
#define PUSH2_FIELD_ARCHIVE_BY 10

/* Log levels (sdk/ABI.md §8). */
#define PUSH2_DEBUG 0
#define PUSH2_INFO 1
#define PUSH2_WARN 2
#define PUSH2_ERROR 3

/* Raw imports, one per host function of sdk/ABI.md §5–§9. */
PUSH2_IMPORT("abi_v1") int32_t push2_abi_v1(void);
PUSH2_IMPORT("output") int32_t push2_output(const void *p, int32_t n);
PUSH2_IMPORT("set_reason") int32_t push2_set_reason(const char *p, int32_t n);
PUSH2_IMPORT("el_find") push2_el push2_el_find(push2_el parent, const char *path, int32_t n);
PUSH2_IMPORT("el_child") push2_el push2_el_child(push2_el parent, int32_t index);
PUSH2_IMPORT("el_name") int32_t push2_el_name(push2_el e, char *buf, int32_t cap);
PUSH2_IMPORT("el_ns") int32_t push2_el_ns(push2_el e, char *buf, int32_t cap);
PUSH2_IMPORT("el_text") int32_t push2_el_text(push2_el e, char *buf, int32_t cap);
PUSH2_IMPORT("el_attr") int32_t push2_el_attr(push2_el e, const char *name, int32_t n, char *buf, int32_t cap);
PUSH2_IMPORT("el_xml") int32_t push2_el_xml(push2_el e, char *buf, int32_t cap);
PUSH2_IMPORT("fact") int32_t push2_fact(int32_t id);
PUSH2_IMPORT("field") int32_t push2_field(int32_t id, char *buf, int32_t cap);
/* Batched reads (ABI v1 revision 1, sdk/ABI.md §7): n facts from id first
 * into out[0..n-1]; the fields whose bit (1 << id) is set in mask, each a
 * little-endian i32 length (or status) followed by its bytes. */
PUSH2_IMPORT("facts") int32_t push2_facts(int32_t first, int32_t n, int32_t *out);
PUSH2_IMPORT("fields") int32_t push2_fields(int32_t mask, void *buf, int32_t cap);
PUSH2_IMPORT("now_ms") int64_t push2_now_ms(void);
PUSH2_IMPORT("log") int32_t push2_log(int32_t level, const char *p, int32_t n);
PUSH2_IMPORT("webpush_encrypt") int32_t push2_webpush_encrypt(const void *ua, int32_t ua_n, const void *auth, int32_t auth_n, const void *pt, int32_t pt_n, void *out, int32_t cap);
PUSH2_IMPORT("jwt_sign") int32_t push2_jwt_sign(const char *alg, int32_t alg_n, const char *key, int32_t key_n, const char *claims, int32_t claims_n, char *out, int32_t cap);
PUSH2_IMPORT("base64_encode") int32_t push2_base64_encode(int32_t variant, const void *in, int32_t n, char *out, int32_t cap);
PUSH2_IMPORT("base64_decode") int32_t push2_base64_decode(const char *in, int32_t n, void *out, int32_t cap);

/* The few libc functions clang may call on its own (struct copies, zeroing),
 * so no libc is needed. With -mbulk-memory (the flags above) the copies and
 * the fill are one memory.copy / memory.fill instruction each, which the
 * host runs as one native copy instead of a guest loop (a guest loop pays
 * the deadline's check at every iteration, sdk/ABI.md §14); memcmp compares
 * eight bytes at a time. */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#ifdef __wasm_bulk_memory__
/* __builtin_memmove / __builtin_memset with bulk memory are the instructions
 * themselves, never a call back into these functions. */
__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n) {
	return __builtin_memmove(dst, src, n);
}
__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n) {
	return __builtin_memmove(dst, src, n);
}
__attribute__((weak)) void *memset(void *dst, int c, size_t n) {
	return __builtin_memset(dst, c, n);
}
#else
__attribute__((weak)) void *memcpy(void *dst, const void *src, size_t n) {
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--) *d++ = *s++;
	return dst;
}
__attribute__((weak)) void *memmove(void *dst, const void *src, size_t n) {
	unsigned char *d = dst;
	const unsigned char *s = src;
	if (d < s) {
		while (n--) *d++ = *s++;
	} else {
		while (n--) d[n] = s[n];
	}
	return dst;
}
__attribute__((weak)) void *memset(void *dst, int c, size_t n) {
	unsigned char *d = dst;
	while (n--) *d++ = (unsigned char)c;
	return dst;
}
#endif
__attribute__((weak)) int memcmp(const void *a, const void *b, size_t n) {
	const unsigned char *x = a, *y = b;
	/* Eight bytes at a time while they are equal (unaligned loads are fine
	 * in WebAssembly), then byte by byte for the difference or the tail. */
	for (; n >= 8; n -= 8, x += 8, y += 8) {
		uint64_t u, v;
		__builtin_memcpy(&u, x, 8);
		__builtin_memcpy(&v, y, 8);
		if (u != v) break;
	}
	for (; n; n--, x++, y++)
		if (*x != *y) return *x - *y;
	return 0;
}

static inline int32_t push2_strlen(const char *s) {
	int32_t n = 0;
	while (s[n]) n++;
	return n;
}

/* PUSH2_DESCRIBE defines push2_describe, which writes the JSON profile list
 * and imports push2.abi_v1, the version gate (sdk/ABI.md §2, §3). */
#define PUSH2_DESCRIBE(json)                                                     \
	PUSH2_EXPORT("push2_describe") int32_t push2_describe(void) {                \
		push2_abi_v1();                                                          \
		return push2_output(json, (int32_t)sizeof(json) - 1);                    \
	}

/* Helpers taking NUL-terminated strings. */

/* push2_find returns the first element path reaches from parent, or a
 * negative status ("{urn:example:vip}vip", sdk/ABI.md §6). */
static inline push2_el push2_find(push2_el parent, const char *path) {
	return push2_el_find(parent, path, push2_strlen(path));
}

/* push2_is reports whether e is {ns}name. */
static inline bool push2_is(push2_el e, const char *ns, const char *name) {
	char buf[256];
	int32_t n = push2_el_name(e, buf, sizeof buf - 1);
	if (n < 0 || n >= (int32_t)sizeof buf || n != push2_strlen(name) || memcmp(buf, name, (size_t)n) != 0) return false;
	n = push2_el_ns(e, buf, sizeof buf - 1);
	return n >= 0 && n < (int32_t)sizeof buf && n == push2_strlen(ns) && memcmp(buf, ns, (size_t)n) == 0;
}

/* push2_attr copies attribute name of e into buf as a C string. It returns
 * the length, or a negative status (PUSH2_NOT_FOUND; PUSH2_TOO_LARGE when
 * the value does not fit in cap-1 bytes). */
static inline int32_t push2_attr(push2_el e, const char *name, char *buf, int32_t cap) {
	int32_t n = push2_el_attr(e, name, push2_strlen(name), buf, cap - 1);
	if (n < 0) return n;
	if (n > cap - 1) return PUSH2_TOO_LARGE;
	buf[n] = 0;
	return n;
}

/* push2_text copies the text of e into buf as a C string (see push2_attr). */
static inline int32_t push2_text(push2_el e, char *buf, int32_t cap) {
	int32_t n = push2_el_text(e, buf, cap - 1);
	if (n < 0) return n;
	if (n > cap - 1) return PUSH2_TOO_LARGE;
	buf[n] = 0;
	return n;
}

/* push2_get_field copies a field into buf as a C string (see push2_attr). */
static inline int32_t push2_get_field(int32_t id, char *buf, int32_t cap) {
	int32_t n = push2_field(id, buf, cap - 1);
	if (n < 0) return n;
	if (n > cap - 1) return PUSH2_TOO_LARGE;
	buf[n] = 0;
	return n;
}

/* Keeping what a profile parsed from a registration element between calls
 * (sdk/ABI.md §14): an instance serves many registrations, but mostly the
 * same few, and the same bytes are the same configuration. A
 * push2_xml_cache holds the bytes of the element seen last, in one of two
 * buffers of the same size that the plugin gives it:
 *
 *   static char xml_a[32768], xml_b[32768];
 *   static push2_xml_cache cache = PUSH2_XML_CACHE(xml_a, xml_b);
 *   ...
 *   if (!push2_xml_same(&cache, PUSH2_MATCH)) parse_config_again();
 *
 * push2_xml_same reads e (push2.el_xml, which the host keeps serialized for
 * registration elements) into the spare buffer and reports whether the
 * bytes are exactly those of the previous call; if not they become the
 * cache's. An element larger than the buffers, or one that cannot be read,
 * is never "the same": the plugin parses it on every call, which is
 * correct, only slower. One call, one memcmp: much cheaper than walking the
 * element with a host call per child and attribute. */
typedef struct {
	char *buf[2];
	int32_t cap; /* of each buffer */
	int32_t len; /* of the last bytes, in buf[cur]; -1: none */
	int32_t cur;
} push2_xml_cache;

#define PUSH2_XML_CACHE(a, b) {{(a), (b)}, (int32_t)sizeof(a) < (int32_t)sizeof(b) ? (int32_t)sizeof(a) : (int32_t)sizeof(b), -1, 0}

static inline bool push2_xml_same(push2_xml_cache *c, push2_el e) {
	char *spare = c->buf[c->cur ^ 1];
	int32_t n = push2_el_xml(e, spare, c->cap);
	if (n < 0 || n > c->cap) {
		c->len = -1;
		return false;
	}
	if (n == c->len && memcmp(spare, c->buf[c->cur], (size_t)n) == 0) return true;
	c->cur ^= 1;
	c->len = n;
	return false;
}

static inline bool push2_flag(int32_t fact) { return push2_fact(fact) == 1; }

static inline void push2_reason(const char *s) { push2_set_reason(s, push2_strlen(s)); }

static inline void push2_logs(int32_t level, const char *s) { push2_log(level, s, push2_strlen(s)); }

static inline int32_t push2_puts(const char *s) { return push2_output(s, push2_strlen(s)); }

/* push2_fail sets the reason and returns the status for a guest-side error,
 * for push2_validate, push2_prepare and push2_send. */
static inline int32_t push2_fail(const char *reason) {
	push2_reason(reason);
	return PUSH2_FAILED;
}

#endif
