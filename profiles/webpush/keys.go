package webpush

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"strings"
)

const (
	// UAPublicLen is the length of a user agent public key: an uncompressed
	// P-256 point, 0x04 || X || Y (RFC 8291 §3.1, SEC 1 §2.3.3).
	UAPublicLen = 65

	// AuthSecretLen is the length of the authentication secret shared between
	// the user agent and the application server (RFC 8291 §3.2).
	AuthSecretLen = 16
)

// Keys is what an application server knows about one subscription: the user
// agent's public key and the shared authentication secret (RFC 8291 §3.2).
//
// Invariant: a Keys value that passed [ParseKeys] or [Keys.Validate] has a
// P-256 UAPublic and a 16-byte AuthSecret. AuthSecret is secret: the caller
// owns the slice, Encrypt only reads it and never retains it.
type Keys struct {
	UAPublic   *ecdh.PublicKey
	AuthSecret []byte
}

// String hides the authentication secret so that a Keys value printed with
// %v or %s by mistake does not end up in a log.
func (k Keys) String() string { return "webpush.Keys{UAPublic: …, AuthSecret: [redacted]}" }

// GoString is String for %#v.
func (k Keys) GoString() string { return k.String() }

// Validate checks the invariant documented on [Keys].
func (k Keys) Validate() error {
	if k.UAPublic == nil {
		return errors.New("webpush: the user agent public key is missing")
	}
	if k.UAPublic.Curve() != ecdh.P256() {
		return errors.New("webpush: the user agent public key is not on curve P-256 (RFC 8291 §3.1)")
	}
	return ParseAuthSecret(k.AuthSecret)
}

// ParseUAPublic parses a user agent public key ("ua-public", the p256dh key
// of RFC 8291 §3.2): exactly 65 bytes, the 0x04 uncompressed-point prefix,
// and a point on P-256 other than the point at infinity. Compressed points are
// rejected, as RFC 8291 §3.1 requires the uncompressed form.
//
// Errors describe the shape of b (its length, its first byte's role) but never
// its contents.
func ParseUAPublic(b []byte) (*ecdh.PublicKey, error) {
	if len(b) != UAPublicLen {
		return nil, fmt.Errorf("webpush: the user agent public key must be %d bytes (an uncompressed P-256 point), but it is %d bytes", UAPublicLen, len(b))
	}
	if b[0] != 0x04 {
		return nil, errors.New("webpush: the user agent public key is not an uncompressed point (it must start with 0x04)")
	}
	pub, err := ecdh.P256().NewPublicKey(b)
	if err != nil {
		// crypto/ecdh's error does not contain key bytes, but do not rely
		// on that staying true.
		return nil, errors.New("webpush: the user agent public key is not a point on curve P-256")
	}
	return pub, nil
}

// ParseAuthSecret checks that b is an authentication secret of exactly 16
// bytes (RFC 8291 §3.2). It does not retain b.
func ParseAuthSecret(b []byte) error {
	if len(b) != AuthSecretLen {
		return fmt.Errorf("webpush: the authentication secret must be %d bytes, but it is %d bytes", AuthSecretLen, len(b))
	}
	return nil
}

// ParseKeys decodes and validates the two subscription values as they travel
// in a Push 2.0 registration: base64 (any alphabet, see [DecodeBase64]) of
// the user agent public key and of the authentication secret.
func ParseKeys(uaPublicB64, authSecretB64 string) (Keys, error) {
	raw, err := DecodeBase64(uaPublicB64)
	if err != nil {
		return Keys{}, fieldError{"ua-public", err}
	}
	pub, err := ParseUAPublic(raw)
	if err != nil {
		return Keys{}, err
	}
	auth, err := DecodeBase64(authSecretB64)
	if err != nil {
		return Keys{}, fieldError{"auth-secret", err}
	}
	if err := ParseAuthSecret(auth); err != nil {
		return Keys{}, err
	}
	return Keys{UAPublic: pub, AuthSecret: auth}, nil
}

// fieldError names the input field an error is about without repeating the
// package prefix. It wraps err for errors.Is and errors.As.
type fieldError struct {
	field string
	err   error
}

func (e fieldError) Error() string {
	return "webpush: " + e.field + ": " + strings.TrimPrefix(e.err.Error(), "webpush: ")
}

func (e fieldError) Unwrap() error { return e.err }
