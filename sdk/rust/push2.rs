//! The Rust SDK for push2 WebAssembly profiles, ABI v1 (sdk/ABI.md).
//!
//! One file, no crates, std only (Debian's `rustc` with
//! `libstd-rust-dev-wasm32`, Rust 1.63 or later). A plugin includes it as a
//! module and uses the `push2_match_profile!` or `push2_send_profile!` macro
//! to define the exports of sdk/ABI.md §3:
//!
//! ```ignore
//! #[path = "../../sdk/rust/push2.rs"]
//! mod push2;
//! push2_match_profile!("urn:example:x:0", my_match, my_validate);
//! ```
//!
//! Build: `rustc --target wasm32-unknown-unknown --crate-type cdylib -O lib.rs`
//!
//! Handles and values read during a call are valid only in that call
//! (sdk/ABI.md §6). Every buffer is the guest's: readers retry with the size
//! the host asks for (sdk/ABI.md §4).

#![allow(dead_code)]

pub mod raw {
    //! The raw imports of sdk/ABI.md §5–§9.
    #[link(wasm_import_module = "push2")]
    extern "C" {
        pub fn abi_v1() -> i32;
        pub fn output(ptr: *const u8, len: i32) -> i32;
        pub fn set_reason(ptr: *const u8, len: i32) -> i32;
        pub fn el_find(parent: i32, path: *const u8, len: i32) -> i32;
        pub fn el_child(parent: i32, index: i32) -> i32;
        pub fn el_name(h: i32, buf: *mut u8, cap: i32) -> i32;
        pub fn el_ns(h: i32, buf: *mut u8, cap: i32) -> i32;
        pub fn el_text(h: i32, buf: *mut u8, cap: i32) -> i32;
        pub fn el_attr(h: i32, name: *const u8, name_len: i32, buf: *mut u8, cap: i32) -> i32;
        pub fn el_xml(h: i32, buf: *mut u8, cap: i32) -> i32;
        pub fn fact(id: i32) -> i32;
        pub fn field(id: i32, buf: *mut u8, cap: i32) -> i32;
        pub fn facts(first: i32, n: i32, buf: *mut i32) -> i32;
        pub fn fields(mask: i32, buf: *mut u8, cap: i32) -> i32;
        pub fn now_ms() -> i64;
        pub fn log(level: i32, ptr: *const u8, len: i32) -> i32;
        pub fn webpush_encrypt(
            ua: *const u8, ua_len: i32, auth: *const u8, auth_len: i32,
            pt: *const u8, pt_len: i32, out: *mut u8, cap: i32,
        ) -> i32;
        pub fn jwt_sign(
            alg: *const u8, alg_len: i32, key: *const u8, key_len: i32,
            claims: *const u8, claims_len: i32, out: *mut u8, cap: i32,
        ) -> i32;
        pub fn base64_encode(variant: i32, input: *const u8, len: i32, out: *mut u8, cap: i32) -> i32;
        pub fn base64_decode(input: *const u8, len: i32, out: *mut u8, cap: i32) -> i32;
    }
}

/// Status codes (sdk/ABI.md §5).
pub const OK: i32 = 0;
pub const NOT_FOUND: i32 = -1;
pub const INVALID: i32 = -2;
pub const TOO_LARGE: i32 = -3;
pub const FAILED: i32 = -4;
pub const UNAVAILABLE: i32 = -5;
pub const RATE_LIMITED: i32 = -6;

/// Facts (sdk/ABI.md §7).
pub mod facts {
    pub const KIND: i32 = 1;
    pub const HAS_BODY: i32 = 2;
    pub const ENCRYPTED: i32 = 3;
    pub const CALL: i32 = 4;
    pub const CHAT_STATE: i32 = 5;
    pub const RECEIPT: i32 = 6;
    pub const CORRECTION: i32 = 7;
    pub const SENT_CARBON: i32 = 8;
    pub const HEADLINE: i32 = 9;
    pub const ERROR: i32 = 10;
    pub const REFLECTION: i32 = 11;
    pub const GROUPCHAT: i32 = 12;
    pub const INVITE: i32 = 13;
    pub const MENTION: i32 = 14;
    pub const REPLY: i32 = 15;
    pub const CONTENT_ONLY: i32 = 16;
    pub const IMPORTANT: i32 = 17;
    pub const SUGGESTED_PRIORITY: i32 = 18;
    pub const TRIGGER: i32 = 19;
    pub const DECISION_PRIORITY: i32 = 20;
    pub const DECISION_VOIP: i32 = 21;
    pub const BUDGET: i32 = 22;
    /// The highest fact id this SDK knows (read in one `raw::facts` call).
    pub const COUNT: i32 = 22;
}

/// Fields (sdk/ABI.md §7).
pub mod fields {
    pub const ACCOUNT: i32 = 1;
    pub const TRIGGER: i32 = 2;
    pub const ARCHIVE_ID: i32 = 3;
    pub const NICK: i32 = 4;
    pub const FROM: i32 = 5;
    pub const CHAT: i32 = 6;
    pub const BODY: i32 = 7;
    pub const TYPE: i32 = 8;
    pub const PROFILE: i32 = 9;
    pub const ARCHIVE_BY: i32 = 10;
}

/// Call actions, the values of `facts::CALL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    None,
    Propose,
    Retract,
    Other,
}

/// Priority of a decision (sdk/ABI.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Default = 0,
    Low = 1,
    Normal = 2,
    High = 3,
}

/// A match profile's answer.
#[derive(Clone, Debug)]
pub struct Decision {
    pub push: bool,
    pub priority: Priority,
    pub voip: bool,
    pub reason: &'static str,
}

impl Decision {
    pub fn push(priority: Priority, reason: &'static str) -> Decision {
        Decision { push: true, priority, voip: false, reason }
    }
    pub fn skip(reason: &'static str) -> Decision {
        Decision { push: false, priority: Priority::Default, voip: false, reason }
    }
    pub fn with_voip(mut self) -> Decision {
        self.voip = true;
        self
    }
    /// The result word of push2_match; also sets the reason.
    pub fn word(&self) -> i32 {
        set_reason(self.reason);
        (self.push as i32) | ((self.priority as i32) << 1) | ((self.voip as i32) << 3)
    }
}

/// Reads bytes with the retry of sdk/ABI.md §4: the host says how much it
/// needs when the buffer is too small.
fn read_bytes(first: usize, f: impl Fn(*mut u8, i32) -> i32) -> Result<Vec<u8>, i32> {
    let mut buf: Vec<u8> = vec![0; first];
    loop {
        let n = f(buf.as_mut_ptr(), buf.len() as i32);
        if n < 0 {
            return Err(n);
        }
        if (n as usize) <= buf.len() {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        buf = vec![0; n as usize];
    }
}

fn read(f: impl Fn(*mut u8, i32) -> i32) -> Result<String, i32> {
    // A stack buffer first: most values fit, and then the String is the
    // only allocation.
    let mut small = [0u8; 128];
    let n = f(small.as_mut_ptr(), small.len() as i32);
    if n < 0 {
        return Err(n);
    }
    if (n as usize) <= small.len() {
        return Ok(String::from_utf8_lossy(&small[..n as usize]).into_owned());
    }
    read_bytes(n as usize, f).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Whether the value `f` reads is exactly `want`, without allocating.
fn read_eq(want: &str, f: impl Fn(*mut u8, i32) -> i32) -> bool {
    let mut small = [0u8; 128];
    let n = f(small.as_mut_ptr(), small.len() as i32);
    if n < 0 || n as usize != want.len() {
        return false;
    }
    if want.len() <= small.len() {
        return &small[..want.len()] == want.as_bytes();
    }
    read_bytes(want.len(), f).map_or(false, |b| b == want.as_bytes())
}

/// What this call has read in one go (sdk/ABI.md §7 "Batched reads"):
/// every fact with one `raw::facts`, the fields with one `raw::fields`.
/// Reset at the start of every export the macros define.
struct CallCache {
    facts: [i32; facts::COUNT as usize],
    facts_loaded: bool,
    fields: Vec<Option<String>>, // index = field id; None: not read yet
    fields_loaded: bool,
}

static mut CACHE: CallCache = CallCache {
    facts: [0; facts::COUNT as usize],
    facts_loaded: false,
    fields: Vec::new(),
    fields_loaded: false,
};

fn cache() -> &'static mut CallCache {
    // SAFETY: a module instance runs one call at a time on one thread.
    unsafe { &mut *std::ptr::addr_of_mut!(CACHE) }
}

/// Forgets what the previous call read; the macros call it at the start
/// of every export. Call it yourself if you write the exports by hand.
pub fn begin() {
    let c = cache();
    c.facts_loaded = false;
    c.fields_loaded = false;
}

/// The fields a plugin usually needs, read together on first use.
const FIELD_MASK: i32 = (1 << fields::ACCOUNT) | (1 << fields::TRIGGER) | (1 << fields::ARCHIVE_ID)
    | (1 << fields::NICK) | (1 << fields::FROM) | (1 << fields::CHAT) | (1 << fields::BODY)
    | (1 << fields::TYPE) | (1 << fields::PROFILE) | (1 << fields::ARCHIVE_BY);

fn load_fields(c: &mut CallCache) {
    c.fields.clear();
    c.fields.resize(32, None);
    c.fields_loaded = true;
    let rec = match read_bytes(1024, |b, n| unsafe { raw::fields(FIELD_MASK, b, n) }) {
        Ok(rec) => rec,
        Err(_) => return, // an older host: field() reads one at a time
    };
    let mut at = 0usize;
    for id in 1..32 {
        if FIELD_MASK & (1 << id) == 0 || at + 4 > rec.len() {
            continue;
        }
        let n = i32::from_le_bytes([rec[at], rec[at + 1], rec[at + 2], rec[at + 3]]);
        at += 4;
        if n < 0 {
            c.fields[id] = Some(String::new());
            continue;
        }
        let end = (at + n as usize).min(rec.len());
        c.fields[id] = Some(String::from_utf8_lossy(&rec[at..end]).into_owned());
        at = end;
    }
}

/// A handle to an element of the input (sdk/ABI.md §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element(pub i32);

pub const STANZA: Element = Element(1);
pub const MATCH: Element = Element(2);
pub const SEND: Element = Element(3);
pub const MESSAGE: Element = Element(4);

impl Element {
    /// The first element `path` reaches ("{ns}name/name/*").
    pub fn find(self, path: &str) -> Option<Element> {
        let h = unsafe { raw::el_find(self.0, path.as_ptr(), path.len() as i32) };
        if h > 0 { Some(Element(h)) } else { None }
    }
    /// The i-th child element.
    pub fn child(self, i: i32) -> Option<Element> {
        let h = unsafe { raw::el_child(self.0, i) };
        if h > 0 { Some(Element(h)) } else { None }
    }
    /// All child elements.
    pub fn children(self) -> Vec<Element> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(c) = self.child(i) {
            out.push(c);
            i += 1;
        }
        out
    }
    pub fn name(self) -> String {
        read(|b, n| unsafe { raw::el_name(self.0, b, n) }).unwrap_or_default()
    }
    pub fn namespace(self) -> String {
        read(|b, n| unsafe { raw::el_ns(self.0, b, n) }).unwrap_or_default()
    }
    pub fn text(self) -> String {
        read(|b, n| unsafe { raw::el_text(self.0, b, n) }).unwrap_or_default()
    }
    pub fn is(self, ns: &str, name: &str) -> bool {
        read_eq(name, |b, n| unsafe { raw::el_name(self.0, b, n) })
            && read_eq(ns, |b, n| unsafe { raw::el_ns(self.0, b, n) })
    }
    /// Attribute `name` ("{ns}name" for a namespaced one).
    pub fn attr(self, name: &str) -> Option<String> {
        read(|b, n| unsafe { raw::el_attr(self.0, name.as_ptr(), name.len() as i32, b, n) }).ok()
    }
    /// The element serialized, namespaces declared.
    pub fn xml(self) -> String {
        read(|b, n| unsafe { raw::el_xml(self.0, b, n) }).unwrap_or_default()
    }
    /// The element serialized into `buf` (replacing its contents, reusing
    /// its capacity): a plugin that keeps its parsed `<match/>` between
    /// calls compares these bytes with the ones it parsed (sdk/ABI.md §14).
    pub fn xml_into(self, buf: &mut Vec<u8>) {
        loop {
            let cap = buf.capacity().max(256);
            buf.clear();
            buf.reserve(cap);
            let n = unsafe { raw::el_xml(self.0, buf.as_mut_ptr(), buf.capacity() as i32) };
            if n < 0 {
                return;
            }
            if n as usize <= buf.capacity() {
                unsafe { buf.set_len(n as usize) };
                return;
            }
            buf.reserve(n as usize);
        }
    }
}

/// A fact: a flag (0/1) or a small number, or a negative status. The
/// first fact a call asks for reads all of them with one host call.
pub fn fact(id: i32) -> i32 {
    if id < 1 || id > facts::COUNT {
        return unsafe { raw::fact(id) };
    }
    let c = cache();
    if !c.facts_loaded {
        if unsafe { raw::facts(1, facts::COUNT, c.facts.as_mut_ptr()) } < 0 {
            return unsafe { raw::fact(id) };
        }
        c.facts_loaded = true;
    }
    c.facts[(id - 1) as usize]
}

pub fn flag(id: i32) -> bool {
    fact(id) == 1
}

pub fn call() -> Call {
    match fact(facts::CALL) {
        1 => Call::Propose,
        2 => Call::Retract,
        3 => Call::Other,
        _ => Call::None,
    }
}

pub fn important() -> bool {
    flag(facts::IMPORTANT)
}

pub fn suggested_priority() -> Priority {
    match fact(facts::SUGGESTED_PRIORITY) {
        1 => Priority::Low,
        3 => Priority::High,
        _ => Priority::Normal,
    }
}

/// A context or stanza field ("" when absent). The first field a call asks
/// for reads all of them with one host call.
pub fn field(id: i32) -> String {
    if id < 1 || id >= 32 || FIELD_MASK & (1 << id) == 0 {
        return read(|b, n| unsafe { raw::field(id, b, n) }).unwrap_or_default();
    }
    let c = cache();
    if !c.fields_loaded {
        load_fields(c);
    }
    match &c.fields[id as usize] {
        Some(s) => s.clone(),
        None => read(|b, n| unsafe { raw::field(id, b, n) }).unwrap_or_default(),
    }
}

/// The evaluation time, Unix milliseconds.
pub fn now_ms() -> i64 {
    unsafe { raw::now_ms() }
}

pub fn set_reason(s: &str) {
    unsafe {
        raw::set_reason(s.as_ptr(), s.len() as i32);
    }
}

pub const DEBUG: i32 = 0;
pub const INFO: i32 = 1;
pub const WARN: i32 = 2;
pub const ERROR: i32 = 3;

/// Logs a line, tagged with the module, rate-limited by the host.
pub fn log(level: i32, msg: &str) {
    unsafe {
        raw::log(level, msg.as_ptr(), msg.len() as i32);
    }
}

/// Appends bytes to the call's output (a send result).
pub fn output(b: &[u8]) -> Result<(), i32> {
    let st = unsafe { raw::output(b.as_ptr(), b.len() as i32) };
    if st < 0 { Err(st) } else { Ok(()) }
}

/// Seals `plaintext` for a Web Push subscription with the host's RFC 8291
/// implementation (sdk/ABI.md §9); send and prepare calls only.
pub fn webpush_encrypt(ua_public: &[u8], auth_secret: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, i32> {
    read_bytes(plaintext.len() + 4096 + 128, |b, n| unsafe {
        raw::webpush_encrypt(
            ua_public.as_ptr(), ua_public.len() as i32, auth_secret.as_ptr(), auth_secret.len() as i32,
            plaintext.as_ptr(), plaintext.len() as i32, b, n,
        )
    })
}

/// Signs a VAPID JWT (RFC 8292) over a JSON object of string claims;
/// returns the token and the base64url raw public key.
pub fn sign_jwt(alg: &str, pkcs8_b64: &str, claims_json: &str) -> Result<(String, String), i32> {
    let s = read(|b, n| unsafe {
        raw::jwt_sign(
            alg.as_ptr(), alg.len() as i32, pkcs8_b64.as_ptr(), pkcs8_b64.len() as i32,
            claims_json.as_ptr(), claims_json.len() as i32, b, n,
        )
    })?;
    match s.find(' ') {
        Some(i) => Ok((s[..i].to_string(), s[i + 1..].to_string())),
        None => Err(FAILED),
    }
}

pub const BASE64_STD: i32 = 0;
pub const BASE64_RAW_URL: i32 = 1;

/// Base64 with the host's encoder: BASE64_STD (padded) or BASE64_RAW_URL.
pub fn base64_encode(variant: i32, data: &[u8]) -> String {
    read(|b, n| unsafe { raw::base64_encode(variant, data.as_ptr(), data.len() as i32, b, n) }).unwrap_or_default()
}

/// Decodes base64 in either alphabet, padded or not.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, i32> {
    read_bytes(text.len(), |b, n| unsafe { raw::base64_decode(text.as_ptr(), text.len() as i32, b, n) })
}

/// Rejects the input of push2_validate or push2_prepare with a reason.
pub fn reject(reason: &str) -> i32 {
    set_reason(reason);
    FAILED
}

/// Writes push2_describe's JSON for one profile and imports the version
/// gate (sdk/ABI.md §2, §3).
pub fn describe(uri: &str, kind: &str) -> i32 {
    unsafe {
        raw::abi_v1();
    }
    let json = format!("{{\"profiles\":[{{\"uri\":\"{}\",\"kind\":\"{}\"}}]}}", uri, kind);
    match output(json.as_bytes()) {
        Ok(()) => OK,
        Err(st) => st,
    }
}

/// Defines push2_describe, push2_send and push2_prepare for one send
/// profile. `sender: fn() -> Result<(), String>` writes with `output`;
/// `preparer: fn() -> Result<(), String>` checks `<send/>`.
#[macro_export]
macro_rules! push2_send_profile {
    ($uri:expr, $sender:path, $preparer:path) => {
        #[no_mangle]
        pub extern "C" fn push2_describe() -> i32 {
            push2::describe($uri, "send")
        }
        #[no_mangle]
        pub extern "C" fn push2_send(_profile: i32) -> i32 {
            push2::begin();
            match $sender() {
                Ok(()) => push2::OK,
                Err(reason) => push2::reject(&reason),
            }
        }
        #[no_mangle]
        pub extern "C" fn push2_prepare(_profile: i32) -> i32 {
            push2::begin();
            match $preparer() {
                Ok(()) => push2::OK,
                Err(reason) => push2::reject(&reason),
            }
        }
    };
}

/// Defines push2_describe, push2_match and push2_validate for one match
/// profile. `matcher: fn() -> Decision`, `validator: fn() -> Result<(), String>`.
#[macro_export]
macro_rules! push2_match_profile {
    ($uri:expr, $matcher:path, $validator:path) => {
        #[no_mangle]
        pub extern "C" fn push2_describe() -> i32 {
            push2::describe($uri, "match")
        }
        #[no_mangle]
        pub extern "C" fn push2_match(_profile: i32) -> i32 {
            push2::begin();
            $matcher().word()
        }
        #[no_mangle]
        pub extern "C" fn push2_validate(_profile: i32) -> i32 {
            push2::begin();
            match $validator() {
                Ok(()) => push2::OK,
                Err(reason) => push2::reject(&reason),
            }
        }
    };
}
