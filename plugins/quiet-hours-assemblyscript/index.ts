// quiet-hours-assemblyscript: the match profile urn:push2:plugin:quiet-hours:0,
// written with the AssemblyScript SDK (sdk/assemblyscript/push2.ts). It is
// the same profile as plugins/quiet-hours-rust and passes the same cases
// (cases -> ../quiet-hours-rust/cases); see plugins/quiet-hours-rust/lib.rs
// for the configuration it reads from <match/>.

import * as push2 from "../../sdk/assemblyscript/push2";

const NS = "urn:example:quiet";

class Quiet {
  start: i64 = 0;
  end: i64 = 0;
  offset: i64 = 0;
  drop: bool = false;
  error: string | null = null;
}

// Parses an optionally negative decimal integer, digits only, like the Rust
// version: "+7", " 7" and "7h" are refused. Returns false on error.
let parsed: i64 = 0;
function int(s: string | null): bool {
  if (s === null) return false;
  let str: string = s;
  let neg = false;
  if (str.startsWith("-")) {
    neg = true;
    str = str.substring(1);
  }
  if (str.length == 0 || str.length > 6) return false;
  let v: i64 = 0;
  for (let i = 0; i < str.length; i++) {
    const c = str.charCodeAt(i);
    if (c < 48 || c > 57) return false;
    v = v * 10 + <i64>(c - 48);
  }
  parsed = neg ? -v : v;
  return true;
}

function fail(q: Quiet, msg: string): Quiet {
  q.error = msg;
  return q;
}

function config(): Quiet {
  const q = new Quiet();
  let found: push2.Element | null = null;
  const children = push2.MATCH.children();
  for (let i = 0; i < children.length; i++) {
    const c = children[i];
    if (c.is(NS, "quiet")) {
      if (found !== null) return fail(q, "<quiet/> must appear once");
      found = c;
    }
  }
  if (found === null) return fail(q, "add <quiet xmlns='urn:example:quiet' start='22' end='7'/> to <match/>");
  const el: push2.Element = found;
  if (!int(el.attr("start")) || parsed < 0 || parsed > 23) return fail(q, "<quiet start='…'/> must be an hour from 0 to 23");
  q.start = parsed;
  if (!int(el.attr("end")) || parsed < 0 || parsed > 23) return fail(q, "<quiet end='…'/> must be an hour from 0 to 23");
  q.end = parsed;
  if (q.start == q.end) return fail(q, "<quiet/> start and end are equal: the window would be empty");
  const tz = el.attr("tz-offset-minutes");
  if (tz !== null) {
    if (!int(tz) || parsed < -1440 || parsed > 1440) return fail(q, "<quiet tz-offset-minutes='…'/> must be minutes from -1440 to 1440");
    q.offset = parsed;
  }
  const during = el.attr("during");
  if (during !== null) {
    if (during == "none") q.drop = true;
    else if (during != "low") return fail(q, "<quiet during='…'/> must be low or none");
  }
  return q;
}

function inWindow(q: Quiet, nowMs: i64): bool {
  // Floor division and a non-negative modulo, as Rust's div_euclid/rem_euclid.
  let minutes = nowMs / 60000;
  if (nowMs % 60000 < 0) minutes -= 1;
  minutes = ((minutes + q.offset) % 1440 + 1440) % 1440;
  const hour = minutes / 60;
  if (q.start < q.end) return q.start <= hour && hour < q.end;
  return hour >= q.start || hour < q.end;
}

export function push2_describe(): i32 {
  return push2.describe("urn:push2:plugin:quiet-hours:0", "match");
}

export function push2_validate(profile: i32): i32 {
  push2.begin();
  const q = config();
  if (q.error !== null) return push2.reject(q.error!);
  return push2.OK;
}

// The configuration of the last <match/> seen: an instance serves many
// registrations, mostly with the same few configurations, so a call parses
// <match/> only when its bytes changed (push2.Element.sameXML).
let cached: Quiet | null = null;

function cachedConfig(): Quiet {
  if (!push2.MATCH.sameXML() || cached === null) cached = config();
  return cached!;
}

export function push2_match(profile: i32): i32 {
  push2.begin();
  const call = push2.callAction();
  if (call == push2.CALL_PROPOSE) return push2.decision(true, push2.PRIORITY_HIGH, true, "call");
  if (call == push2.CALL_RETRACT) return push2.decision(true, push2.PRIORITY_HIGH, false, "call retracted");
  if (!push2.important()) return push2.decision(false, push2.PRIORITY_DEFAULT, false, "not important");
  const q = cachedConfig();
  if (q.error !== null) return push2.decision(true, push2.PRIORITY_NORMAL, false, "no valid quiet hours");
  if (inWindow(q, push2.nowMs())) {
    if (q.drop) return push2.decision(false, push2.PRIORITY_DEFAULT, false, "quiet hours");
    return push2.decision(true, push2.PRIORITY_LOW, false, "quiet hours: low priority");
  }
  return push2.decision(true, push2.PRIORITY_NORMAL, false, "outside quiet hours");
}
