package webpush

import "time"

// HostCrypto offers this package's RFC 8291 encryption and RFC 8292 signing
// in the shape the WebAssembly host's crypto host functions take
// (host.Crypto, and casetest.Decrypter for the case runner; sdk/ABI.md), so guests do not
// reimplement them. It is safe for concurrent use.
type HostCrypto struct {
	signer *Signer
	clock  func() time.Time
}

// NewHostCrypto returns a HostCrypto with its own JWT cache.
func NewHostCrypto() *HostCrypto {
	return &HostCrypto{signer: NewSigner(0), clock: time.Now}
}

// Encrypt seals plaintext for a subscription, padded to a bucket size.
func (c *HostCrypto) Encrypt(uaPublic, authSecret, plaintext []byte) ([]byte, error) {
	pub, err := ParseUAPublic(uaPublic)
	if err != nil {
		return nil, err
	}
	k := Keys{UAPublic: pub, AuthSecret: authSecret}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	pad, err := BucketPad(len(plaintext), 0)
	if err != nil {
		return nil, err
	}
	return Encrypt(k, plaintext, pad)
}

// SignJWT signs (or returns the cached token for) the claims with the
// PKCS#8 key; it returns the token and the raw public key.
func (c *HostCrypto) SignJWT(alg, pkcs8b64 string, claims map[string]string) (string, []byte, error) {
	k, err := ParseVAPIDKey(alg, pkcs8b64)
	if err != nil {
		return "", nil, err
	}
	cl := make([]Claim, 0, len(claims))
	for n, v := range claims {
		cl = append(cl, Claim{Name: n, Value: v})
	}
	tok, err := c.signer.Sign(k, cl, "", c.clock())
	if err != nil {
		return "", nil, err
	}
	return tok, k.PublicRaw(), nil
}

// Decrypt opens a body sealed for the subscription whose raw private key
// is uaPrivate (for test cases and tools).
func (c *HostCrypto) Decrypt(uaPrivate, authSecret, body []byte) ([]byte, error) {
	p, err := ParseUAPrivate(uaPrivate)
	if err != nil {
		return nil, err
	}
	return Decrypt(p, authSecret, body)
}
