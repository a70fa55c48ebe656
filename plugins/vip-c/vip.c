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
static char chat[3072], body[256 * 1024 + 1], value[1024];

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
static int32_t others_priority(void) {
	push2_el o = push2_find(PUSH2_MATCH, "{" NS "}others");
	if (o < 0) return 0;
	int32_t n = push2_attr(o, "priority", value, sizeof value);
	if (n == PUSH2_NOT_FOUND) return PUSH2_PRIORITY_LOW;
	if (n < 0) return -1;
	if (streq(value, "low")) return PUSH2_PRIORITY_LOW;
	if (streq(value, "normal")) return PUSH2_PRIORITY_NORMAL;
	if (streq(value, "high")) return PUSH2_PRIORITY_HIGH;
	return -1;
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

PUSH2_EXPORT("push2_match") int32_t push2_match(int32_t profile) {
	(void)profile;
	switch (push2_fact(PUSH2_FACT_CALL)) {
	case PUSH2_CALL_PROPOSE:
		push2_reason("call");
		return PUSH2_PUSH | PUSH2_PRIORITY_HIGH | PUSH2_VOIP;
	case PUSH2_CALL_RETRACT:
		push2_reason("call retracted");
		return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
	}
	if (!push2_flag(PUSH2_FACT_IMPORTANT)) {
		push2_reason("not important");
		return 0;
	}
	if (push2_get_field(PUSH2_FIELD_CHAT, chat, sizeof chat) < 0) chat[0] = 0;
	lower(chat);
	if (push2_get_field(PUSH2_FIELD_BODY, body, sizeof body) < 0) body[0] = 0;
	lower(body);
	for (int32_t i = 0;; i++) {
		push2_el c = push2_el_child(PUSH2_MATCH, i);
		if (c < 0) break;
		if (push2_is(c, NS, "vip") && push2_attr(c, "jid", value, sizeof value) > 0) {
			lower(value);
			if (streq(value, chat)) {
				push2_reason("vip sender");
				return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
			}
		}
	}
	if (body[0]) {
		for (int32_t i = 0;; i++) {
			push2_el c = push2_el_child(PUSH2_MATCH, i);
			if (c < 0) break;
			if (push2_is(c, NS, "keyword") && push2_text(c, value, sizeof value) > 0) {
				lower(value);
				if (contains(body, value)) {
					push2_reason("keyword");
					return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
				}
			}
		}
	}
	int32_t others = others_priority();
	if (others > 0) {
		push2_reason("other important message");
		return PUSH2_PUSH | others;
	}
	push2_reason("not from a vip and no keyword");
	return 0;
}
