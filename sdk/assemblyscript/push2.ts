// The AssemblyScript SDK for push2 WebAssembly profiles, ABI v1
// (sdk/ABI.md). No dependencies besides the compiler, pinned in
// package-lock.json next to this file.
//
// A plugin imports this file, exports push2_describe / push2_match /
// push2_validate (sdk/ABI.md §3) built from the helpers below, and is
// compiled with:
//
//   asc plugin.ts -O3 --runtime incremental --use abort=<path to this file>/push2Abort -o plugin.wasm
//
// --use abort=… routes AssemblyScript's abort() (failed assertions, bad
// casts) to push2Abort, which logs through push2.log and traps: the module
// then imports nothing but "push2" (sdk/ABI.md §1). Strings cross the ABI as
// UTF-8 in guest-owned buffers (sdk/ABI.md §4).

// Raw imports of sdk/ABI.md §5–§9.
@external("push2", "abi_v1") declare function abi_v1(): i32;
@external("push2", "output") declare function raw_output(ptr: usize, len: i32): i32;
@external("push2", "set_reason") declare function raw_set_reason(ptr: usize, len: i32): i32;
@external("push2", "el_find") declare function raw_el_find(parent: i32, path: usize, len: i32): i32;
@external("push2", "el_child") declare function raw_el_child(parent: i32, index: i32): i32;
@external("push2", "el_name") declare function raw_el_name(h: i32, buf: usize, cap: i32): i32;
@external("push2", "el_ns") declare function raw_el_ns(h: i32, buf: usize, cap: i32): i32;
@external("push2", "el_text") declare function raw_el_text(h: i32, buf: usize, cap: i32): i32;
@external("push2", "el_attr") declare function raw_el_attr(h: i32, name: usize, nameLen: i32, buf: usize, cap: i32): i32;
@external("push2", "el_xml") declare function raw_el_xml(h: i32, buf: usize, cap: i32): i32;
@external("push2", "fact") declare function raw_fact(id: i32): i32;
@external("push2", "field") declare function raw_field(id: i32, buf: usize, cap: i32): i32;
@external("push2", "facts") declare function raw_facts(first: i32, n: i32, buf: usize): i32;
@external("push2", "now_ms") declare function raw_now_ms(): i64;
@external("push2", "log") declare function raw_log(level: i32, ptr: usize, len: i32): i32;
@external("push2", "webpush_encrypt") declare function raw_webpush_encrypt(ua: usize, uaLen: i32, auth: usize, authLen: i32, pt: usize, ptLen: i32, out: usize, cap: i32): i32;
@external("push2", "jwt_sign") declare function raw_jwt_sign(alg: usize, algLen: i32, key: usize, keyLen: i32, claims: usize, claimsLen: i32, out: usize, cap: i32): i32;
@external("push2", "base64_encode") declare function raw_base64_encode(variant: i32, input: usize, len: i32, out: usize, cap: i32): i32;
@external("push2", "base64_decode") declare function raw_base64_decode(input: usize, len: i32, out: usize, cap: i32): i32;

// Status codes (sdk/ABI.md §5).
export const OK: i32 = 0;
export const NOT_FOUND: i32 = -1;
export const INVALID: i32 = -2;
export const TOO_LARGE: i32 = -3;
export const FAILED: i32 = -4;
export const UNAVAILABLE: i32 = -5;
export const RATE_LIMITED: i32 = -6;

// Facts (sdk/ABI.md §7).
export const FACT_KIND: i32 = 1;
export const FACT_HAS_BODY: i32 = 2;
export const FACT_ENCRYPTED: i32 = 3;
export const FACT_CALL: i32 = 4;
export const FACT_CHAT_STATE: i32 = 5;
export const FACT_RECEIPT: i32 = 6;
export const FACT_CORRECTION: i32 = 7;
export const FACT_SENT_CARBON: i32 = 8;
export const FACT_HEADLINE: i32 = 9;
export const FACT_ERROR: i32 = 10;
export const FACT_REFLECTION: i32 = 11;
export const FACT_GROUPCHAT: i32 = 12;
export const FACT_INVITE: i32 = 13;
export const FACT_MENTION: i32 = 14;
export const FACT_REPLY: i32 = 15;
export const FACT_CONTENT_ONLY: i32 = 16;
export const FACT_IMPORTANT: i32 = 17;
export const FACT_SUGGESTED_PRIORITY: i32 = 18;
export const FACT_TRIGGER: i32 = 19;
export const FACT_DECISION_PRIORITY: i32 = 20;
export const FACT_DECISION_VOIP: i32 = 21;
export const FACT_BUDGET: i32 = 22;
/** The highest fact id this SDK knows, read in one push2.facts call. */
export const FACT_COUNT: i32 = 22;

export const CALL_NONE: i32 = 0;
export const CALL_PROPOSE: i32 = 1;
export const CALL_RETRACT: i32 = 2;
export const CALL_OTHER: i32 = 3;

// Fields (sdk/ABI.md §7).
export const FIELD_ACCOUNT: i32 = 1;
export const FIELD_TRIGGER: i32 = 2;
export const FIELD_ARCHIVE_ID: i32 = 3;
export const FIELD_NICK: i32 = 4;
export const FIELD_FROM: i32 = 5;
export const FIELD_CHAT: i32 = 6;
export const FIELD_BODY: i32 = 7;
export const FIELD_TYPE: i32 = 8;
export const FIELD_PROFILE: i32 = 9;
export const FIELD_ARCHIVE_BY: i32 = 10;

// Priorities and the match result word (sdk/ABI.md §4).
export const PRIORITY_DEFAULT: i32 = 0;
export const PRIORITY_LOW: i32 = 1;
export const PRIORITY_NORMAL: i32 = 2;
export const PRIORITY_HIGH: i32 = 3;

// Log levels (sdk/ABI.md §8).
export const DEBUG: i32 = 0;
export const INFO: i32 = 1;
export const WARN: i32 = 2;
export const ERROR: i32 = 3;

// read implements the retry of sdk/ABI.md §4: call f with a buffer, and
// again with the size the host asked for if it did not fit. null for a
// negative status.
// One scratch buffer for every read: the value is decoded into a string
// before the next read, so no call allocates a buffer per value.
let scratch = new ArrayBuffer(256);

function read(h: i32, a: usize, alen: i32, f: (h: i32, a: usize, alen: i32, buf: usize, cap: i32) => i32): string | null {
  let cap = scratch.byteLength;
  while (true) {
    if (scratch.byteLength < cap) scratch = new ArrayBuffer(cap);
    const buf = scratch;
    const n = f(h, a, alen, changetype<usize>(buf), cap);
    if (n < 0) return null;
    if (n <= cap) return String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>n);
    cap = n;
  }
}

function orEmpty(s: string | null): string {
  return s === null ? "" : s;
}

/** A handle to an element of the input, valid during one call (sdk/ABI.md §6). */
export class Element {
  constructor(public readonly handle: i32) {}

  /** The first element path reaches: "{ns}name/name/*". */
  find(path: string): Element | null {
    const p = String.UTF8.encode(path);
    const h = raw_el_find(this.handle, changetype<usize>(p), p.byteLength);
    return h > 0 ? new Element(h) : null;
  }

  child(i: i32): Element | null {
    const h = raw_el_child(this.handle, i);
    return h > 0 ? new Element(h) : null;
  }

  children(): Element[] {
    const out = new Array<Element>();
    for (let i = 0; ; i++) {
      const c = this.child(i);
      if (c === null) break;
      out.push(c);
    }
    return out;
  }

  name(): string {
    return orEmpty(read(this.handle, 0, 0, (h: i32, a: usize, l: i32, b: usize, n: i32): i32 => raw_el_name(h, b, n)));
  }

  namespace(): string {
    return orEmpty(read(this.handle, 0, 0, (h: i32, a: usize, l: i32, b: usize, n: i32): i32 => raw_el_ns(h, b, n)));
  }

  text(): string {
    return orEmpty(read(this.handle, 0, 0, (h: i32, a: usize, l: i32, b: usize, n: i32): i32 => raw_el_text(h, b, n)));
  }

  is(ns: string, name: string): bool {
    return this.name() == name && this.namespace() == ns;
  }

  /** Attribute name ("{ns}name" for a namespaced one), or null. */
  attr(name: string): string | null {
    const p = String.UTF8.encode(name);
    return read(this.handle, changetype<usize>(p), p.byteLength, (h: i32, a: usize, l: i32, b: usize, n: i32): i32 => raw_el_attr(h, a, l, b, n));
  }

  /** The element serialized, namespaces declared. */
  xml(): string {
    return orEmpty(read(this.handle, 0, 0, (h: i32, a: usize, l: i32, b: usize, n: i32): i32 => raw_el_xml(h, b, n)));
  }

  /** Whether the element's serialization is still the one of the last
   * sameXML call (false on the first): a plugin that keeps its parsed
   * <match/> between calls asks this instead of walking the element again
   * (sdk/ABI.md §14). One host call, no allocation once the buffers fit. */
  sameXML(): bool {
    let n = raw_el_xml(this.handle, changetype<usize>(xmlNext), xmlNext.byteLength);
    if (n < 0) return false;
    if (n > xmlNext.byteLength) {
      xmlNext = new ArrayBuffer(n);
      n = raw_el_xml(this.handle, changetype<usize>(xmlNext), xmlNext.byteLength);
      if (n < 0 || n > xmlNext.byteLength) return false;
    }
    const same = n == xmlLen && memory.compare(changetype<usize>(xmlNext), changetype<usize>(xmlLast), <usize>n) == 0;
    if (!same) {
      const t = xmlLast;
      xmlLast = xmlNext;
      xmlNext = t.byteLength >= xmlLast.byteLength ? t : new ArrayBuffer(xmlLast.byteLength);
      xmlLen = n;
    }
    return same;
  }
}

let xmlLast = new ArrayBuffer(512);
let xmlNext = new ArrayBuffer(512);
let xmlLen: i32 = -1;

export const STANZA = new Element(1);
export const MATCH = new Element(2);
export const SEND = new Element(3);
export const MESSAGE = new Element(4);

// The facts of the current call, read in one push2.facts call between
// begin() and the call's result (sdk/ABI.md §7 "Batched reads").
const facts = new StaticArray<i32>(FACT_COUNT);
let factsState: i32 = 0; // 0: no call begun (read one by one), 1: begun, 2: loaded

/** Starts a call: the facts it asks for are then read all at once, on
 * first use, and kept until the call's result (decision, reject, or the
 * next begin). Call it first in every export; without it every fact is a
 * host call of its own. */
export function begin(): void {
  factsState = 1;
}

function endCall(): void {
  factsState = 0;
}

/** A fact: a flag (0/1) or a small number, or a negative status. */
export function fact(id: i32): i32 {
  if (factsState == 0 || id < 1 || id > FACT_COUNT) return raw_fact(id);
  if (factsState == 1) {
    if (raw_facts(1, FACT_COUNT, changetype<usize>(facts)) < 0) return raw_fact(id);
    factsState = 2;
  }
  return unchecked(facts[id - 1]);
}

export function flag(id: i32): bool {
  return fact(id) == 1;
}

export function callAction(): i32 {
  const c = fact(FACT_CALL);
  return c < 0 ? CALL_NONE : c;
}

export function important(): bool {
  return flag(FACT_IMPORTANT);
}

/** A context or stanza field ("" when absent). */
export function field(id: i32): string {
  return orEmpty(read(id, 0, 0, (h: i32, a: usize, l: i32, b: usize, n: i32): i32 => raw_field(h, b, n)));
}

/** The evaluation time, Unix milliseconds. */
export function nowMs(): i64 {
  return raw_now_ms();
}

// The last reason, encoded: profiles mostly set a few constant strings.
let reasonString: string = "";
let reasonBytes = new ArrayBuffer(0);

export function setReason(s: string): void {
  if (s !== reasonString) {
    reasonBytes = String.UTF8.encode(s);
    reasonString = s;
  }
  raw_set_reason(changetype<usize>(reasonBytes), reasonBytes.byteLength);
}

/** Logs a line, tagged with the module, rate-limited by the host. */
export function log(level: i32, msg: string): void {
  const b = String.UTF8.encode(msg);
  raw_log(level, changetype<usize>(b), b.byteLength);
}

/** Appends a string to the call's output (a send result). */
export function output(s: string): i32 {
  const b = String.UTF8.encode(s);
  return raw_output(changetype<usize>(b), b.byteLength);
}

/** Appends raw bytes to the call's output. */
export function outputBytes(b: ArrayBuffer): i32 {
  return raw_output(changetype<usize>(b), b.byteLength);
}

export const BASE64_STD: i32 = 0;
export const BASE64_RAW_URL: i32 = 1;

/** Base64 with the host's encoder (sdk/ABI.md §9). */
export function base64Encode(variant: i32, data: ArrayBuffer): string {
  let cap = data.byteLength * 4 / 3 + 4;
  while (true) {
    const out = new ArrayBuffer(cap);
    const n = raw_base64_encode(variant, changetype<usize>(data), data.byteLength, changetype<usize>(out), cap);
    if (n < 0) return "";
    if (n <= cap) return String.UTF8.decodeUnsafe(changetype<usize>(out), <usize>n);
    cap = n;
  }
}

/** Decodes base64 in either alphabet, padded or not; null if malformed. */
export function base64Decode(text: string): ArrayBuffer | null {
  const t = String.UTF8.encode(text);
  const out = new ArrayBuffer(t.byteLength);
  const n = raw_base64_decode(changetype<usize>(t), t.byteLength, changetype<usize>(out), out.byteLength);
  if (n < 0) return null;
  return out.slice(0, n);
}

/** Seals plaintext for a Web Push subscription with the host's RFC 8291
 * implementation (send and prepare calls); null on failure. */
export function webpushEncrypt(uaPublic: ArrayBuffer, authSecret: ArrayBuffer, plaintext: ArrayBuffer): ArrayBuffer | null {
  let cap = plaintext.byteLength + 4096 + 128;
  while (true) {
    const out = new ArrayBuffer(cap);
    const n = raw_webpush_encrypt(changetype<usize>(uaPublic), uaPublic.byteLength, changetype<usize>(authSecret), authSecret.byteLength,
      changetype<usize>(plaintext), plaintext.byteLength, changetype<usize>(out), cap);
    if (n < 0) return null;
    if (n <= cap) return out.slice(0, n);
    cap = n;
  }
}

/** Signs a VAPID JWT over a JSON object of string claims; returns
 * "TOKEN KEY" (token, space, base64url public key) or null. */
export function signJwt(alg: string, pkcs8b64: string, claimsJson: string): string | null {
  const a = String.UTF8.encode(alg);
  const k = String.UTF8.encode(pkcs8b64);
  const c = String.UTF8.encode(claimsJson);
  let cap = 1024;
  while (true) {
    const out = new ArrayBuffer(cap);
    const n = raw_jwt_sign(changetype<usize>(a), a.byteLength, changetype<usize>(k), k.byteLength, changetype<usize>(c), c.byteLength, changetype<usize>(out), cap);
    if (n < 0) return null;
    if (n <= cap) return String.UTF8.decodeUnsafe(changetype<usize>(out), <usize>n);
    cap = n;
  }
}

/** The result word of push2_match for a decision; also sets the reason. */
export function decision(push: bool, priority: i32, voip: bool, reason: string): i32 {
  endCall();
  setReason(reason);
  return (push ? 1 : 0) | ((priority & 3) << 1) | (voip ? 8 : 0);
}

/** Rejects the input of push2_validate or push2_prepare with a reason. */
export function reject(reason: string): i32 {
  endCall();
  setReason(reason);
  return FAILED;
}

/** push2_describe's body for one profile; also imports the version gate
 * push2.abi_v1 (sdk/ABI.md §2, §3). */
export function describe(uri: string, kind: string): i32 {
  abi_v1();
  return output('{"profiles":[{"uri":"' + uri + '","kind":"' + kind + '"}]}');
}

/** The abort handler that --use abort= points at: log, then trap. */
export function push2Abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  log(ERROR, "abort: " + orEmpty(message) + " at " + orEmpty(fileName) + ":" + line.toString() + ":" + column.toString());
  unreachable();
}
