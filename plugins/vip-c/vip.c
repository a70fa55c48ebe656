/*
 * vip-c: the VIP-sender and keyword match profile urn:push2:plugin:vip:0,
 * written with the C SDK (sdk/c/push2.h). It is the same profile as
 * plugins/vip-go and passes the same cases (cases -> ../vip-go/cases);
 * see plugins/vip-go/main.go for the configuration it reads from <match/>.
 */
#include "push2.h"

#define NS "urn:example:vip"

PUSH2_DESCRIBE("{\"profiles\":[{\"uri\":\"urn:push2:plugin:vip:0\",\"kind\":\"match\"}]}")

/* A body can be as large as a stanza (256 KiB, engine.MaxStanzaBytes): the
 * buffer is in .bss, so it costs memory pages, not binary size. */
static char value[1024];
#define CHAT_MAX 3072          /* longer chat JIDs are taken as absent */
#define BODY_MAX (256 * 1024) /* engine.MaxStanzaBytes */

static void lower(char *s) {
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z') *s += 'a' - 'A';
}

static bool contains(const char *s, const char *sub) {
	int32_t n = push2_strlen(s), m = push2_strlen(sub);
	for (int32_t i = 0; i + m <= n; i++)
		if (memcmp(s + i, sub, (size_t)m) == 0) return true;
	return false;
}

static bool streq(const char *a, const char *b) {
	int32_t n = push2_strlen(a);
	return n == push2_strlen(b) && memcmp(a, b, (size_t)n) == 0;
}

/* others_priority returns the priority bits of <others/>, 0 when absent,
 * -1 when malformed. */
static int32_t others_priority_of(push2_el o) {
	int32_t n = push2_attr(o, "priority", value, sizeof value);
	if (n == PUSH2_NOT_FOUND) return PUSH2_PRIORITY_LOW;
	if (n < 0) return -1;
	if (streq(value, "low")) return PUSH2_PRIORITY_LOW;
	if (streq(value, "normal")) return PUSH2_PRIORITY_NORMAL;
	if (streq(value, "high")) return PUSH2_PRIORITY_HIGH;
	return -1;
}

static int32_t others_priority(void) {
	push2_el o = push2_find(PUSH2_MATCH, "{" NS "}others");
	return o < 0 ? 0 : others_priority_of(o);
}

PUSH2_EXPORT("push2_validate") int32_t push2_validate(int32_t profile) {
	(void)profile;
	int32_t count = 0;
	for (int32_t i = 0;; i++) {
		push2_el c = push2_el_child(PUSH2_MATCH, i);
		if (c < 0) break;
		if (push2_is(c, NS, "vip")) {
			if (push2_attr(c, "jid", value, sizeof value) <= 0)
				return push2_fail("<vip/> needs a non-empty 'jid' attribute");
			count++;
		} else if (push2_is(c, NS, "keyword")) {
			if (push2_text(c, value, sizeof value) <= 0)
				return push2_fail("<keyword/> must not be empty");
			count++;
		}
	}
	if (count == 0)
		return push2_fail("give at least one <vip jid='…'/> or <keyword>…</keyword> in urn:example:vip");
	if (others_priority() < 0)
		return push2_fail("<others priority='…'/> must be low, normal or high");
	return PUSH2_OK;
}

/* field_at points f at the value of the next field of a push2_fields record
 * (sdk/ABI.md §7 "Batched reads") and returns its length, 0 for a status;
 * *at moves past it. */
static int32_t field_at(char *rec, int32_t *at, char **f) {
	int32_t n;
	memcpy(&n, rec + *at, 4);
	*at += 4;
	*f = rec + *at;
	if (n < 0) return 0;
	*at += n;
	return n;
}

/* The CHAT and BODY fields, read together: a record of two lengths and
 * their bytes, each value then NUL-terminated in place (the record has
 * room: the NUL of CHAT overwrites BODY's first length byte after it has
 * been read). */
static char rec[8 + CHAT_MAX + BODY_MAX + 1];

PUSH2_EXPORT("push2_match") int32_t push2_match(int32_t profile) {
	(void)profile;
	int32_t facts[PUSH2_FACT_COUNT]; /* every fact in one host call */
	if (push2_facts(1, PUSH2_FACT_COUNT, facts) < 0) return PUSH2_FAILED;
	switch (facts[PUSH2_FACT_CALL - 1]) {
	case PUSH2_CALL_PROPOSE:
		push2_reason("call");
		return PUSH2_PUSH | PUSH2_PRIORITY_HIGH | PUSH2_VOIP;
	case PUSH2_CALL_RETRACT:
		push2_reason("call retracted");
		return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
	}
	if (facts[PUSH2_FACT_IMPORTANT - 1] != 1) {
		push2_reason("not important");
		return 0;
	}
	char *c = "", *b = "";
	int32_t size = push2_fields((1 << PUSH2_FIELD_CHAT) | (1 << PUSH2_FIELD_BODY), rec, sizeof rec - 1);
	if (size >= 8 && size < (int32_t)sizeof rec) {
		int32_t at = 0;
		int32_t cn = field_at(rec, &at, &c);
		int32_t bn = field_at(rec, &at, &b);
		c[cn] = 0; /* after field_at read BODY's length */
		b[bn] = 0;
		if (cn >= CHAT_MAX) c = ""; /* as push2_get_field: too long, absent */
	}
	lower(c);
	lower(b);
	/* One pass over <match/>'s children: a VIP wins at once; a keyword and
	 * <others/> only when no VIP follows. */
	bool keyword = false;
	push2_el others = -1;
	char name[16];
	for (int32_t i = 0;; i++) {
		push2_el e = push2_el_child(PUSH2_MATCH, i);
		if (e < 0) break;
		int32_t n = push2_el_name(e, name, sizeof name - 1);
		if (n < 0 || n >= (int32_t)sizeof name - 1) continue;
		name[n] = 0;
		bool vip = streq(name, "vip"), kw = streq(name, "keyword"), oth = streq(name, "others");
		if (!vip && !kw && !oth) continue;
		if (!push2_is(e, NS, name)) continue;
		if (vip) {
			if (push2_attr(e, "jid", value, sizeof value) > 0) {
				lower(value);
				if (streq(value, c)) {
					push2_reason("vip sender");
					return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
				}
			}
		} else if (kw) {
			if (!keyword && b[0] && push2_text(e, value, sizeof value) > 0) {
				lower(value);
				keyword = contains(b, value);
			}
		} else if (others < 0) {
			others = e;
		}
	}
	if (keyword) {
		push2_reason("keyword");
		return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
	}
	int32_t prio = others < 0 ? 0 : others_priority_of(others);
	if (prio > 0) {
		push2_reason("other important message");
		return PUSH2_PUSH | prio;
	}
	push2_reason("not from a vip and no keyword");
	return 0;
}
