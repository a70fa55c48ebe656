// Package webpush implements the cryptography of the Push 2.0 send profile
// urn:xmpp:push2:send:sce+rfc8291+rfc8292:0: message encryption for Web Push
// (RFC 8291, using the aes128gcm content coding of RFC 8188) and voluntary
// application server identification (VAPID, RFC 8292).
//
// The package is a plain library. It knows nothing of XMPP, stanzas or push
// services; callers hand it bytes and keys and get bytes and tokens back.
//
// # Encryption (RFC 8291)
//
// [Encrypt] seals one push message to a user agent's P-256 public key
// ("ua-public", the 65-byte uncompressed point of RFC 8291 §3.2) and its
// 16-byte authentication secret (RFC 8291 §3.2). Every call draws a fresh
// ephemeral ECDH key pair and a fresh 16-byte salt, as RFC 8291 §3.1 and
// RFC 8188 §2.1 require, so two encryptions of the same plaintext never share
// a content-encryption key. The output is the complete message body: the
// RFC 8188 §2.1 header followed by exactly one record (RFC 8291 §4). Its
// length is [EncryptedSize]; [BucketPad] chooses padding that hides the
// plaintext length within a small set of sizes (RFC 8188 §2, RFC 8291 §4).
//
// [Decrypt] is the user agent's side of the same exchange, used by tests and
// by command-line tools.
//
// # VAPID (RFC 8292)
//
// [ParseVAPIDKey] reads an application server's PKCS#8 EC private key.
// [Signer] produces the JWT of RFC 8292 §2, caching tokens per key and claim
// set so that a busy server does not sign one per message; [Verify] checks a
// token against a raw public key the way a push service would (RFC 8292 §3).
//
// # Secrets
//
// Private keys and authentication secrets never appear in error strings, in
// the output of the fmt verbs for this package's types, or as map keys. Values
// of type [Keys], [VAPIDKey] and [Identity] hold secret material; callers own
// them and must not log their fields.
package webpush
