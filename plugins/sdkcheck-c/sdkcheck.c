/*
 * sdkcheck-c: the SDK conformance profile urn:push2:plugin:sdkcheck:0 in C
 * (see plugins/sdkcheck-go/main.go; the cases are shared).
 */
#include "push2.h"

#define NS "urn:test:sdk"

PUSH2_DESCRIBE("{\"profiles\":[{\"uri\":\"urn:push2:plugin:sdkcheck:0\",\"kind\":\"send\"}]}")

static char out[16384], val[4096], tmp[8192];
static int32_t n;

static void put(const char *s) {
	int32_t l = push2_strlen(s);
	if (n + l < (int32_t)sizeof out) {
		memcpy(out + n, s, (size_t)l);
		n += l;
	}
}

static void putn(const char *s, int32_t l) {
	if (l > 0 && n + l < (int32_t)sizeof out) {
		memcpy(out + n, s, (size_t)l);
		n += l;
	}
}

static void itoa64(int64_t v, char *buf) {
	char rev[24];
	int i = 0;
	bool neg = v < 0;
	uint64_t u = neg ? (uint64_t)(-v) : (uint64_t)v;
	do {
		rev[i++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	int j = 0;
	if (neg) buf[j++] = '-';
	while (i) buf[j++] = rev[--i];
	buf[j] = 0;
}

static void attr(const char *name, const char *value) {
	put(" ");
	put(name);
	put("='");
	put(value);
	put("'");
}

static void num(const char *name, int64_t v) {
	char buf[24];
	itoa64(v, buf);
	attr(name, buf);
}

static void field(const char *name, int32_t id) {
	if (push2_get_field(id, val, sizeof val) < 0) val[0] = 0;
	attr(name, val);
}

PUSH2_EXPORT("push2_send") int32_t push2_send(int32_t profile) {
	(void)profile;
	n = 0;
	put("<check xmlns='" NS "'");
	attr("lang", "c");
	num("kind", push2_fact(PUSH2_FACT_KIND));
	num("has-body", push2_fact(PUSH2_FACT_HAS_BODY));
	num("call", push2_fact(PUSH2_FACT_CALL));
	num("important", push2_fact(PUSH2_FACT_IMPORTANT));
	num("mention", push2_fact(PUSH2_FACT_MENTION));
	num("groupchat", push2_fact(PUSH2_FACT_GROUPCHAT));
	num("priority", push2_fact(PUSH2_FACT_DECISION_PRIORITY));
	num("voip", push2_fact(PUSH2_FACT_DECISION_VOIP));
	num("trigger", push2_fact(PUSH2_FACT_TRIGGER));
	num("unknown-fact", push2_fact(9999));
	attr("budget-ok", push2_fact(PUSH2_FACT_BUDGET) > 1000 ? "1" : "0");
	field("account", PUSH2_FIELD_ACCOUNT);
	field("chat", PUSH2_FIELD_CHAT);
	field("from", PUSH2_FIELD_FROM);
	field("archive-id", PUSH2_FIELD_ARCHIVE_ID);
	field("nick", PUSH2_FIELD_NICK);
	field("type", PUSH2_FIELD_TYPE);
	field("trigger-name", PUSH2_FIELD_TRIGGER);
	field("profile", PUSH2_FIELD_PROFILE);
	field("body", PUSH2_FIELD_BODY);
	if (push2_el_name(PUSH2_MESSAGE, val, sizeof val - 1) >= 0) {
		val[push2_el_name(PUSH2_MESSAGE, val, sizeof val - 1)] = 0;
		attr("msg-name", val);
	}
	int32_t l = push2_el_ns(PUSH2_MESSAGE, val, sizeof val - 1);
	if (l >= 0 && l < (int32_t)sizeof val) {
		val[l] = 0;
		attr("msg-ns", val);
	}
	push2_el p = push2_find(PUSH2_SEND, "{" NS "}param");
	if (p > 0) {
		if (push2_attr(p, "value", val, sizeof val) < 0) val[0] = 0;
		attr("param", val);
		if (push2_text(p, val, sizeof val) < 0) val[0] = 0;
		attr("param-text", val);
		/* A size query, then the value: the retry rule of ABI.md §4. */
		int32_t need = push2_el_attr(p, "long", 4, val, 0);
		num("long-len", need <= (int32_t)sizeof val ? push2_el_attr(p, "long", 4, val, sizeof val) : -1);
		attr("absent-attr", push2_el_attr(p, "absent", 6, val, sizeof val) == PUSH2_NOT_FOUND ? "0" : "1");
	}
	int32_t children = 0;
	while (push2_el_child(PUSH2_STANZA, children) > 0) children++;
	num("children", children);
	push2_el sid = push2_find(PUSH2_STANZA, "{urn:xmpp:sid:0}stanza-id");
	if (sid > 0 && push2_attr(sid, "id", val, sizeof val) >= 0) attr("stanza-id", val);
	attr("missing-found", push2_find(PUSH2_STANZA, "{urn:nowhere}nothing") > 0 ? "1" : "0");
	l = push2_el_xml(PUSH2_STANZA, tmp, sizeof tmp);
	attr("xml-ok", l >= 8 && l <= (int32_t)sizeof tmp && memcmp(tmp, "<message", 8) == 0 ? "1" : "0");
	num("now", push2_now_ms());
	int32_t bl = push2_field(PUSH2_FIELD_BODY, val, sizeof val);
	if (bl < 0 || bl > (int32_t)sizeof val) bl = 0;
	l = push2_base64_encode(0, val, bl, tmp, sizeof tmp - 1);
	if (l >= 0 && l < (int32_t)sizeof tmp) {
		tmp[l] = 0;
		attr("b64", tmp);
	}
	l = push2_base64_encode(1, val, bl, tmp, sizeof tmp - 1);
	if (l >= 0 && l < (int32_t)sizeof tmp) {
		tmp[l] = 0;
		attr("b64url", tmp);
	}
	put("/>");

	/* Encrypt the body with the keys from <send/>. */
	static unsigned char ua[128], auth[64], sealed[8192];
	static char text[256];
	int32_t ual = -1, authl = -1;
	push2_el e = push2_find(PUSH2_SEND, "{" NS "}ua-public");
	if (e > 0 && push2_text(e, text, sizeof text) > 0) ual = push2_base64_decode(text, push2_strlen(text), ua, sizeof ua);
	e = push2_find(PUSH2_SEND, "{" NS "}auth-secret");
	if (e > 0 && push2_text(e, text, sizeof text) > 0) authl = push2_base64_decode(text, push2_strlen(text), auth, sizeof auth);
	if (ual > 0 && authl > 0) {
		int32_t sl = push2_webpush_encrypt(ua, ual, auth, authl, val, bl, sealed, sizeof sealed);
		if (sl < 0 || sl > (int32_t)sizeof sealed) return push2_fail("encryption failed");
		l = push2_base64_encode(0, sealed, sl, tmp, sizeof tmp);
		if (l < 0 || l > (int32_t)sizeof tmp) return push2_fail("base64 failed");
		put("<sealed xmlns='" NS "'>");
		putn(tmp, l);
		put("</sealed>");
	}
	e = push2_find(PUSH2_SEND, "{" NS "}jwt-key");
	if (e > 0 && push2_text(e, val, sizeof val) > 0) {
		static const char claims[] = "{\"aud\":\"https://push.example.net\"}";
		l = push2_jwt_sign("ES256", 5, val, push2_strlen(val), claims, sizeof claims - 1, tmp, sizeof tmp);
		if (l < 0 || l > (int32_t)sizeof tmp) return push2_fail("signing failed");
		int32_t sp = 0;
		while (sp < l && tmp[sp] != ' ') sp++;
		put("<jwt xmlns='" NS "' key='");
		putn(tmp + sp + 1, l - sp - 1);
		put("'>");
		putn(tmp, sp);
		put("</jwt>");
	}
	return push2_output(out, n);
}
