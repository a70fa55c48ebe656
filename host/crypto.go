package host

// Crypto is what the crypto host functions call (sdk/ABI.md §9 "Crypto"):
// push2d wires an implementation on package profiles/webpush, so a WASM send
// profile encrypts and signs exactly as the built-in
// urn:xmpp:push2:send:sce+rfc8291+rfc8292:0 does, without shipping its own
// crypto. Implementations must be safe for concurrent use and must never put
// key material in their errors: the host logs them.
type Crypto interface {
	// Encrypt seals plaintext for a Web Push subscription (RFC 8291): uaPublic
	// is the 65-byte uncompressed P-256 point, authSecret the 16-byte
	// secret. The result is the aes128gcm body of RFC 8188 §2, padded as the
	// implementation sees fit.
	Encrypt(uaPublic, authSecret, plaintext []byte) ([]byte, error)
	// SignJWT signs a VAPID JWT (RFC 8292 §2) with alg ("ES256"…) and the
	// base64 PKCS#8 key, over claims (the implementation adds "exp" when
	// absent). It returns the compact token and the raw public key.
	SignJWT(alg, pkcs8b64 string, claims map[string]string) (token string, pubRaw []byte, err error)
}
