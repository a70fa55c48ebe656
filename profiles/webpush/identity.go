package webpush

import (
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
)

// UAPrivateLen is the length of a raw P-256 private scalar.
const UAPrivateLen = 32

// Identity is a complete set of fresh keys for trying out the profile: the
// user agent's side of a subscription (RFC 8291 §3.2) and an application
// server's VAPID key (RFC 8292 §2). Every field is unpadded base64url
// (RFC 4648 §5), so an Identity marshals to JSON as is.
//
// UAPrivate, AuthSecret and VAPIDPrivate are secret. String redacts them;
// encoding/json does not, by design, since writing them out is the point of
// a "push2 keys" command.
type Identity struct {
	// UAPrivate is the user agent's P-256 private scalar, 32 bytes.
	UAPrivate string `json:"ua_private"`
	// UAPublic is the user agent's public key, 65 bytes uncompressed:
	// the "ua-public" value.
	UAPublic string `json:"ua_public"`
	// AuthSecret is the 16-byte authentication secret: "auth-secret".
	AuthSecret string `json:"auth_secret"`
	// VAPIDAlg is the JWS algorithm of the VAPID key, "ES256".
	VAPIDAlg string `json:"vapid_alg"`
	// VAPIDPrivate is the VAPID key as PKCS#8 DER: the body of a
	// "PRIVATE KEY" PEM block, accepted by ParseVAPIDKey.
	VAPIDPrivate string `json:"vapid_private"`
	// VAPIDPublic is the VAPID public key, 65 bytes uncompressed: the
	// "k" of RFC 8292 §3.2 and the key of a Push 2.0 <jwt/> element.
	VAPIDPublic string `json:"vapid_public"`
}

// GenerateIdentity creates a fresh user agent key pair, authentication
// secret and ES256 VAPID key from crypto/rand.
func GenerateIdentity() (Identity, error) {
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, fmt.Errorf("webpush: generating the user agent key failed: %w", err)
	}
	auth := make([]byte, AuthSecretLen)
	rand.Read(auth) // never fails (crypto/rand, Go 1.24+)
	vk, err := GenerateVAPIDKey("ES256")
	if err != nil {
		return Identity{}, err
	}
	der, err := vk.PKCS8()
	if err != nil {
		return Identity{}, err
	}
	return Identity{
		UAPrivate:    EncodeBase64URL(ua.Bytes()),
		UAPublic:     EncodeBase64URL(ua.PublicKey().Bytes()),
		AuthSecret:   EncodeBase64URL(auth),
		VAPIDAlg:     vk.Alg(),
		VAPIDPrivate: EncodeBase64URL(der),
		VAPIDPublic:  EncodeBase64URL(vk.PublicRaw()),
	}, nil
}

// String redacts the secret fields.
func (id Identity) String() string {
	return fmt.Sprintf("webpush.Identity{UAPublic: %s, AuthSecret: [redacted], UAPrivate: [redacted], VAPIDAlg: %s, VAPIDPublic: %s, VAPIDPrivate: [redacted]}",
		id.UAPublic, id.VAPIDAlg, id.VAPIDPublic)
}

// GoString is String for %#v.
func (id Identity) GoString() string { return id.String() }

// Keys returns the application server's view of the subscription.
func (id Identity) Keys() (Keys, error) { return ParseKeys(id.UAPublic, id.AuthSecret) }

// UAPrivateKey decodes the user agent private key, for Decrypt.
func (id Identity) UAPrivateKey() (*ecdh.PrivateKey, error) {
	raw, err := DecodeBase64(id.UAPrivate)
	if err != nil {
		return nil, fieldError{"ua-private", err}
	}
	return ParseUAPrivate(raw)
}

// VAPIDKey decodes the VAPID signing key.
func (id Identity) VAPIDKey() (*VAPIDKey, error) { return ParseVAPIDKey(id.VAPIDAlg, id.VAPIDPrivate) }

// ParseUAPrivate parses a user agent private key given as the raw 32-byte
// P-256 scalar (the "d" of a JWK, RFC 7518 §6.2.2.1). Errors never include
// the bytes.
func ParseUAPrivate(b []byte) (*ecdh.PrivateKey, error) {
	if len(b) != UAPrivateLen {
		return nil, fmt.Errorf("webpush: the user agent private key must be %d bytes, but it is %d bytes", UAPrivateLen, len(b))
	}
	k, err := ecdh.P256().NewPrivateKey(b)
	if err != nil {
		return nil, errors.New("webpush: the user agent private key is not a valid P-256 scalar")
	}
	return k, nil
}
