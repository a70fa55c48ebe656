// sdkcheck-assemblyscript: the SDK conformance profile
// urn:push2:plugin:sdkcheck:0 in AssemblyScript (see
// plugins/sdkcheck-go/main.go; the cases are shared).

import * as push2 from "../../sdk/assemblyscript/push2";

const NS = "urn:test:sdk";

let o = "";

function attr(name: string, value: string): void {
  o += " " + name + "='" + value + "'";
}

function num(name: string, v: i64): void {
  attr(name, v.toString());
}

export function push2_describe(): i32 {
  return push2.describe("urn:push2:plugin:sdkcheck:0", "send");
}

export function push2_send(profile: i32): i32 {
  push2.begin();
  o = "<check xmlns='" + NS + "'";
  attr("lang", "assemblyscript");
  num("kind", push2.fact(push2.FACT_KIND));
  num("has-body", push2.fact(push2.FACT_HAS_BODY));
  num("call", push2.fact(push2.FACT_CALL));
  num("important", push2.fact(push2.FACT_IMPORTANT));
  num("mention", push2.fact(push2.FACT_MENTION));
  num("groupchat", push2.fact(push2.FACT_GROUPCHAT));
  num("priority", push2.fact(push2.FACT_DECISION_PRIORITY));
  num("voip", push2.fact(push2.FACT_DECISION_VOIP));
  num("trigger", push2.fact(push2.FACT_TRIGGER));
  num("unknown-fact", push2.fact(9999));
  attr("budget-ok", push2.fact(push2.FACT_BUDGET) > 1000 ? "1" : "0");
  attr("account", push2.field(push2.FIELD_ACCOUNT));
  attr("chat", push2.field(push2.FIELD_CHAT));
  attr("from", push2.field(push2.FIELD_FROM));
  attr("archive-id", push2.field(push2.FIELD_ARCHIVE_ID));
  attr("nick", push2.field(push2.FIELD_NICK));
  attr("type", push2.field(push2.FIELD_TYPE));
  attr("trigger-name", push2.field(push2.FIELD_TRIGGER));
  attr("profile", push2.field(push2.FIELD_PROFILE));
  const body = push2.field(push2.FIELD_BODY);
  attr("body", body);
  attr("msg-name", push2.MESSAGE.name());
  attr("msg-ns", push2.MESSAGE.namespace());
  const p = push2.SEND.find("{" + NS + "}param");
  if (p !== null) {
    const v = p.attr("value");
    attr("param", v === null ? "" : v);
    attr("param-text", p.text());
    const long = p.attr("long");
    num("long-len", long === null ? 0 : String.UTF8.byteLength(long));
    attr("absent-attr", p.attr("absent") === null ? "0" : "1");
  }
  num("children", push2.STANZA.children().length);
  const sid = push2.STANZA.find("{urn:xmpp:sid:0}stanza-id");
  if (sid !== null) {
    const id = sid.attr("id");
    attr("stanza-id", id === null ? "" : id);
  }
  attr("missing-found", push2.STANZA.find("{urn:nowhere}nothing") !== null ? "1" : "0");
  attr("xml-ok", push2.STANZA.xml().startsWith("<message") ? "1" : "0");
  num("now", push2.nowMs());
  const bodyBytes = String.UTF8.encode(body);
  attr("b64", push2.base64Encode(push2.BASE64_STD, bodyBytes));
  attr("b64url", push2.base64Encode(push2.BASE64_RAW_URL, bodyBytes));
  o += "/>";

  const ua = push2.SEND.find("{" + NS + "}ua-public");
  const auth = push2.SEND.find("{" + NS + "}auth-secret");
  if (ua !== null && auth !== null) {
    const uaRaw = push2.base64Decode(ua.text());
    const authRaw = push2.base64Decode(auth.text());
    if (uaRaw === null || authRaw === null) return push2.reject("bad keys");
    const sealed = push2.webpushEncrypt(uaRaw, authRaw, bodyBytes);
    if (sealed === null) return push2.reject("encryption failed");
    o += "<sealed xmlns='" + NS + "'>" + push2.base64Encode(push2.BASE64_STD, sealed) + "</sealed>";
  }
  const key = push2.SEND.find("{" + NS + "}jwt-key");
  if (key !== null) {
    const signed = push2.signJwt("ES256", key.text(), '{"aud":"https://push.example.net"}');
    if (signed === null) return push2.reject("signing failed");
    const sp = signed.indexOf(" ");
    o += "<jwt xmlns='" + NS + "' key='" + signed.substring(sp + 1) + "'>" + signed.substring(0, sp) + "</jwt>";
  }
  return push2.output(o);
}
