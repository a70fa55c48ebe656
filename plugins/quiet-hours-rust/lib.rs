//! quiet-hours-rust: the match profile urn:push2:plugin:quiet-hours:0,
//! written with the Rust SDK (sdk/rust/push2.rs). plugins/quiet-hours-assemblyscript
//! is the same profile; both pass the cases in ./cases.
//!
//! Configuration, one child of the registration's <match/>:
//!
//! ```xml
//! <quiet xmlns='urn:example:quiet' start='22' end='7' tz-offset-minutes='0' during='low'/>
//! ```
//!
//! `start` and `end` are hours (0–23) of the user's local time, which is UTC
//! plus `tz-offset-minutes` (default 0, at most ±1440); the window runs from
//! `start` up to, not including, `end` and may wrap past midnight. During it
//! important stanzas push with low priority (`during='low'`, the default) or
//! not at all (`during='none'`); outside it they push with normal priority.
//! Calls ring anyway: a proposal pushes high with VoIP, a retraction high.
//! Unimportant stanzas never push.

#[path = "../../sdk/rust/push2.rs"]
#[macro_use]
mod push2;

use push2::{Call, Decision, Element, Priority, MATCH};

const NS: &str = "urn:example:quiet";

struct Quiet {
    start: i64,
    end: i64,
    offset: i64,
    drop: bool,
}

/// Parses an optionally negative decimal integer, digits only: "+7", " 7"
/// and "7h" are refused (the AssemblyScript version parses the same way).
fn int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut v: i64 = 0;
    for c in digits.bytes() {
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}

fn config() -> Result<Quiet, String> {
    let mut found: Option<Element> = None;
    for c in MATCH.children() {
        if c.is(NS, "quiet") {
            if found.is_some() {
                return Err("<quiet/> must appear once".to_string());
            }
            found = Some(c);
        }
    }
    let q = found.ok_or_else(|| "add <quiet xmlns='urn:example:quiet' start='22' end='7'/> to <match/>".to_string())?;
    let hour = |name: &str| -> Result<i64, String> {
        match q.attr(name).as_deref().and_then(int) {
            Some(h) if (0..24).contains(&h) => Ok(h),
            _ => Err(format!("<quiet {}='…'/> must be an hour from 0 to 23", name)),
        }
    };
    let start = hour("start")?;
    let end = hour("end")?;
    if start == end {
        return Err("<quiet/> start and end are equal: the window would be empty".to_string());
    }
    let offset = match q.attr("tz-offset-minutes") {
        None => 0,
        Some(s) => match int(&s) {
            Some(m) if (-1440..=1440).contains(&m) => m,
            _ => return Err("<quiet tz-offset-minutes='…'/> must be minutes from -1440 to 1440".to_string()),
        },
    };
    let drop = match q.attr("during").as_deref() {
        None | Some("low") => false,
        Some("none") => true,
        Some(_) => return Err("<quiet during='…'/> must be low or none".to_string()),
    };
    Ok(Quiet { start, end, offset, drop })
}

/// The last `<match/>` parsed, by its bytes, and what came of it:
/// instances serve many registrations, but mostly the same few, so a call
/// usually re-reads one element (`el_xml`) instead of walking it.
struct Cached {
    xml: Vec<u8>,
    scratch: Vec<u8>,
    config: Option<Result<Quiet, String>>,
}

static mut CACHED: Cached = Cached { xml: Vec::new(), scratch: Vec::new(), config: None };

/// config(), parsed again only when `<match/>` changed since the last call.
fn cached_config() -> &'static Result<Quiet, String> {
    // SAFETY: an instance runs one call at a time on one thread.
    let c = unsafe { &mut *std::ptr::addr_of_mut!(CACHED) };
    MATCH.xml_into(&mut c.scratch);
    if c.config.is_none() || c.scratch != c.xml {
        std::mem::swap(&mut c.xml, &mut c.scratch);
        c.config = Some(config());
    }
    c.config.as_ref().unwrap()
}

fn validate() -> Result<(), String> {
    config().map(|_| ())
}

fn in_window(q: &Quiet, now_ms: i64) -> bool {
    let minutes = (now_ms.div_euclid(60_000) + q.offset).rem_euclid(1440);
    let hour = minutes / 60;
    if q.start < q.end {
        q.start <= hour && hour < q.end
    } else {
        hour >= q.start || hour < q.end
    }
}

fn decide() -> Decision {
    match push2::call() {
        Call::Propose => return Decision::push(Priority::High, "call").with_voip(),
        Call::Retract => return Decision::push(Priority::High, "call retracted"),
        _ => {}
    }
    if !push2::important() {
        return Decision::skip("not important");
    }
    let q = match cached_config() {
        Ok(q) => q,
        Err(_) => return Decision::push(Priority::Normal, "no valid quiet hours"),
    };
    if in_window(q, push2::now_ms()) {
        if q.drop {
            return Decision::skip("quiet hours");
        }
        return Decision::push(Priority::Low, "quiet hours: low priority");
    }
    Decision::push(Priority::Normal, "outside quiet hours")
}

push2_match_profile!("urn:push2:plugin:quiet-hours:0", decide, validate);
