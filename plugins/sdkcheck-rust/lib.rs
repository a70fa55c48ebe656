//! sdkcheck-rust: the SDK conformance profile urn:push2:plugin:sdkcheck:0 in
//! Rust (see plugins/sdkcheck-go/main.go; the cases are shared).

#[path = "../../sdk/rust/push2.rs"]
#[macro_use]
mod push2;

use push2::{facts, fields, STANZA, SEND, MESSAGE};

const NS: &str = "urn:test:sdk";

fn send() -> Result<(), String> {
    let mut o = format!("<check xmlns='{}'", NS);
    let mut attr = |name: &str, value: &str| o.push_str(&format!(" {}='{}'", name, value));
    attr("lang", "rust");
    for (name, id) in [
        ("kind", facts::KIND), ("has-body", facts::HAS_BODY), ("call", facts::CALL),
        ("important", facts::IMPORTANT), ("mention", facts::MENTION), ("groupchat", facts::GROUPCHAT),
        ("priority", facts::DECISION_PRIORITY), ("voip", facts::DECISION_VOIP), ("trigger", facts::TRIGGER),
        ("unknown-fact", 9999),
    ] {
        attr(name, &push2::fact(id).to_string());
    }
    attr("budget-ok", if push2::fact(facts::BUDGET) > 1000 { "1" } else { "0" });
    for (name, id) in [
        ("account", fields::ACCOUNT), ("chat", fields::CHAT), ("from", fields::FROM),
        ("archive-id", fields::ARCHIVE_ID), ("nick", fields::NICK), ("type", fields::TYPE),
        ("trigger-name", fields::TRIGGER), ("profile", fields::PROFILE), ("body", fields::BODY),
    ] {
        attr(name, &push2::field(id));
    }
    attr("msg-name", &MESSAGE.name());
    attr("msg-ns", &MESSAGE.namespace());
    if let Some(p) = SEND.find(&format!("{{{}}}param", NS)) {
        attr("param", &p.attr("value").unwrap_or_default());
        attr("param-text", &p.text());
        attr("long-len", &p.attr("long").unwrap_or_default().len().to_string());
        attr("absent-attr", if p.attr("absent").is_some() { "1" } else { "0" });
    }
    attr("children", &STANZA.children().len().to_string());
    if let Some(sid) = STANZA.find("{urn:xmpp:sid:0}stanza-id") {
        attr("stanza-id", &sid.attr("id").unwrap_or_default());
    }
    attr("missing-found", if STANZA.find("{urn:nowhere}nothing").is_some() { "1" } else { "0" });
    attr("xml-ok", if STANZA.xml().starts_with("<message") { "1" } else { "0" });
    attr("now", &push2::now_ms().to_string());
    let body = push2::field(fields::BODY);
    attr("b64", &push2::base64_encode(push2::BASE64_STD, body.as_bytes()));
    attr("b64url", &push2::base64_encode(push2::BASE64_RAW_URL, body.as_bytes()));
    o.push_str("/>");

    let text = |name: &str| SEND.find(&format!("{{{}}}{}", NS, name)).map(|e| e.text());
    if let (Some(ua), Some(auth)) = (text("ua-public"), text("auth-secret")) {
        let ua = push2::base64_decode(&ua).map_err(|_| "bad ua-public".to_string())?;
        let auth = push2::base64_decode(&auth).map_err(|_| "bad auth-secret".to_string())?;
        let sealed = push2::webpush_encrypt(&ua, &auth, body.as_bytes()).map_err(|_| "encryption failed".to_string())?;
        o.push_str(&format!("<sealed xmlns='{}'>{}</sealed>", NS, push2::base64_encode(push2::BASE64_STD, &sealed)));
    }
    if let Some(key) = text("jwt-key") {
        let (token, public) = push2::sign_jwt("ES256", &key, "{\"aud\":\"https://push.example.net\"}")
            .map_err(|_| "signing failed".to_string())?;
        o.push_str(&format!("<jwt xmlns='{}' key='{}'>{}</jwt>", NS, public, token));
    }
    push2::output(o.as_bytes()).map_err(|st| format!("output: status {}", st))
}

fn prepare() -> Result<(), String> {
    Ok(())
}

push2_send_profile!("urn:push2:plugin:sdkcheck:0", send, prepare);
