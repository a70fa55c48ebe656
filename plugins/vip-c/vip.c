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

/* The configuration of the last <match/>, kept while its bytes stay the
 * same (sdk/ABI.md §14, push2_xml_same): a call then costs four host calls
 * (facts, el_xml, fields, set_reason) instead of a few per child. XML_MAX is
 * engine.DefaultLimits.MaxEnableBytes, the largest <enable/>: a larger
 * <match/> (a server with a higher limit) is walked on every call. */
#define XML_MAX (32 * 1024)
static char xml_a[XML_MAX], xml_b[XML_MAX];
static push2_xml_cache match_xml = PUSH2_XML_CACHE(xml_a, xml_b);

/* ITEMS_MAX VIPs and keywords are kept; a <match/> with more is walked on
 * every call (the case "more VIPs than vip-c keeps" covers that path). */
#define ITEMS_MAX 64
static struct {
	bool valid;                           /* it describes the bytes in match_xml */
	int32_t nvip, nkw;
	int32_t vip[ITEMS_MAX], kw[ITEMS_MAX]; /* offsets in pool: lowered, NUL-terminated */
	bool others;                          /* an <others/> was seen */
	int32_t others_prio;                  /* of the first <others/>, 0 when absent */
	int32_t used;
	char pool[ITEMS_MAX * 64];
} cfg;

/* keep appends the value in value[] (n bytes) to the pool; false when it
 * does not fit, and the configuration is then not kept. */
static bool keep(int32_t *list, int32_t *count, int32_t n) {
	if (*count >= ITEMS_MAX || cfg.used + n + 1 > (int32_t)sizeof cfg.pool) return false;
	list[(*count)++] = cfg.used;
	memcpy(cfg.pool + cfg.used, value, (size_t)n + 1);
	cfg.used += n + 1;
	return true;
}

/* The verdict of one configuration item, the same whether it comes from the
 * walk or from cfg. */
static bool vip_matches(const char *jid, const char *chat) { return streq(jid, chat); }
static bool keyword_matches(const char *kw, const char *body) { return body[0] && contains(body, kw); }

/* walk reads <match/>'s children with host calls, in one pass: whether a VIP
 * is chat and whether a keyword is in body, and the configuration into cfg
 * (cfg.valid when all of it fits). */
static void walk(const char *c, const char *b, bool *vip, bool *keyword) {
	cfg.valid = true;
	cfg.nvip = cfg.nkw = cfg.used = 0;
	cfg.others = false;
	cfg.others_prio = 0;
	*vip = *keyword = false;
	char name[16];
	for (int32_t i = 0;; i++) {
		push2_el e = push2_el_child(PUSH2_MATCH, i);
		if (e < 0) break;
		int32_t n = push2_el_name(e, name, sizeof name - 1);
		if (n < 0 || n >= (int32_t)sizeof name - 1) continue;
		name[n] = 0;
		bool isvip = streq(name, "vip"), iskw = streq(name, "keyword"), oth = streq(name, "others");
		if (!isvip && !iskw && !oth) continue;
		if (!push2_is(e, NS, name)) continue;
		if (isvip) {
			if ((n = push2_attr(e, "jid", value, sizeof value)) > 0) {
				lower(value);
				*vip = *vip || vip_matches(value, c);
				cfg.valid = cfg.valid && keep(cfg.vip, &cfg.nvip, n);
			}
		} else if (iskw) {
			if ((n = push2_text(e, value, sizeof value)) > 0) {
				lower(value);
				*keyword = *keyword || keyword_matches(value, b);
				cfg.valid = cfg.valid && keep(cfg.kw, &cfg.nkw, n);
			}
		} else if (!cfg.others) {
			cfg.others = true;
			cfg.others_prio = others_priority_of(e);
		}
	}
}

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
	bool vip = false, keyword = false;
	if (push2_xml_same(&match_xml, PUSH2_MATCH) && cfg.valid) {
		for (int32_t i = 0; i < cfg.nvip && !vip; i++) vip = vip_matches(cfg.pool + cfg.vip[i], c);
		if (!vip && cfg.nkw > 0 && b[0]) {
			lower(b);
			for (int32_t i = 0; i < cfg.nkw && !keyword; i++) keyword = keyword_matches(cfg.pool + cfg.kw[i], b);
		}
	} else {
		lower(b);
		walk(c, b, &vip, &keyword);
	}
	/* A VIP wins over a keyword, a keyword over <others/>. */
	if (vip) {
		push2_reason("vip sender");
		return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
	}
	if (keyword) {
		push2_reason("keyword");
		return PUSH2_PUSH | PUSH2_PRIORITY_HIGH;
	}
	if (cfg.others_prio > 0) {
		push2_reason("other important message");
		return PUSH2_PUSH | cfg.others_prio;
	}
	push2_reason("not from a vip and no keyword");
	return 0;
}
