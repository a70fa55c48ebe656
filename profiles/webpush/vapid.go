package webpush

import (
	"container/list"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// Token lifetimes (RFC 8292 §2).
const (
	// MaxTokenLifetime is the furthest in the future that a VAPID token's
	// "exp" claim may lie: RFC 8292 §2 forbids more than 24 hours from the
	// time of the request.
	MaxTokenLifetime = 24 * time.Hour

	// TokenLifetime is how far ahead Signer sets "exp" when the caller does
	// not: half the maximum, so a token stays acceptable despite clock skew
	// between this server and the push service.
	TokenLifetime = 12 * time.Hour

	// TokenRefresh is how long before its "exp" a cached token stops being
	// handed out, so that no request carries a token about to expire.
	TokenRefresh = time.Hour

	// DefaultCacheSize bounds the number of tokens a Signer keeps when
	// NewSigner is given no size (or the zero Signer is used).
	DefaultCacheSize = 1024
)

// VAPID signature algorithms and the curves they require (RFC 7518 §3.4).
// RFC 8292 §2 itself mandates ES256; the larger curves are accepted for
// deployments that want them.
var vapidCurves = map[string]struct {
	alg   jwa.SignatureAlgorithm
	curve elliptic.Curve
}{
	"ES256": {jwa.ES256, elliptic.P256()},
	"ES384": {jwa.ES384, elliptic.P384()},
	"ES512": {jwa.ES512, elliptic.P521()},
}

// VAPIDKey is an application server's signing key for RFC 8292.
//
// Invariant: priv lies on the curve that alg requires and pub is its public
// key as an uncompressed point. id is a hash of alg and pub only, so it is
// safe to use as a map key or to print. A VAPIDKey is immutable after
// construction and safe for concurrent use. It holds a private key: its
// String and GoString methods redact it, and it has no exported fields.
type VAPIDKey struct {
	alg  jwa.SignatureAlgorithm
	priv *ecdsa.PrivateKey
	pub  []byte
	id   [sha256.Size]byte
}

// ParseVAPIDKey reads the signing key for alg ("ES256", "ES384" or "ES512")
// from the base64 body of a PKCS#8 PEM block ("PRIVATE KEY", RFC 5208 §5):
// the lines between the BEGIN and END lines, in either base64 alphabet, with
// or without line breaks. A complete PEM block is accepted too.
//
// The key must be an ECDSA key on the curve alg names (P-256 for ES256, the
// only choice RFC 8292 §2 allows). Errors say what is wrong with the key's
// type or encoding, never what it contains.
func ParseVAPIDKey(alg string, pkcs8Base64 string) (*VAPIDKey, error) {
	if _, ok := vapidCurves[alg]; !ok {
		return nil, fmt.Errorf("webpush: the VAPID algorithm %q is not supported (use ES256, ES384 or ES512)", truncate(alg, 16))
	}
	var der []byte
	if strings.Contains(pkcs8Base64, "-----BEGIN") {
		block, _ := pem.Decode([]byte(strings.TrimSpace(pkcs8Base64)))
		if block == nil {
			return nil, errors.New("webpush: the VAPID key looks like PEM but its block cannot be read")
		}
		der = block.Bytes
	} else {
		var err error
		if der, err = DecodeBase64(pkcs8Base64); err != nil {
			return nil, fieldError{"VAPID key", err}
		}
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		if _, sec1 := x509.ParseECPrivateKey(der); sec1 == nil {
			return nil, errors.New("webpush: the VAPID key is a SEC 1 \"EC PRIVATE KEY\", not PKCS#8; convert it with 'openssl pkcs8 -topk8 -nocrypt'")
		}
		return nil, errors.New("webpush: the VAPID key is not a PKCS#8 private key")
	}
	priv, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("webpush: the VAPID key is a %s key, but %s needs an ECDSA key", keyKind(parsed), alg)
	}
	return NewVAPIDKey(alg, priv)
}

// NewVAPIDKey wraps an existing ECDSA private key for alg, checking that the
// curve fits. The VAPIDKey keeps priv; the caller must not modify it after.
func NewVAPIDKey(alg string, priv *ecdsa.PrivateKey) (*VAPIDKey, error) {
	spec, ok := vapidCurves[alg]
	if !ok {
		return nil, fmt.Errorf("webpush: the VAPID algorithm %q is not supported (use ES256, ES384 or ES512)", truncate(alg, 16))
	}
	if priv == nil {
		return nil, errors.New("webpush: the VAPID key is missing")
	}
	if priv.Curve != spec.curve {
		return nil, fmt.Errorf("webpush: the VAPID key is on curve %s, but %s needs %s (RFC 7518 §3.4)", curveName(priv.Curve), alg, spec.curve.Params().Name)
	}
	pub, err := priv.PublicKey.Bytes()
	if err != nil {
		return nil, errors.New("webpush: the VAPID key's public point is invalid")
	}
	k := &VAPIDKey{alg: spec.alg, priv: priv, pub: pub}
	h := sha256.New()
	h.Write([]byte("push2 webpush VAPID key\x00" + alg + "\x00"))
	h.Write(pub)
	h.Sum(k.id[:0])
	return k, nil
}

// GenerateVAPIDKey creates a fresh key for alg.
func GenerateVAPIDKey(alg string) (*VAPIDKey, error) {
	spec, ok := vapidCurves[alg]
	if !ok {
		return nil, fmt.Errorf("webpush: the VAPID algorithm %q is not supported (use ES256, ES384 or ES512)", truncate(alg, 16))
	}
	priv, err := ecdsa.GenerateKey(spec.curve, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("webpush: generating the VAPID key failed: %w", err)
	}
	return NewVAPIDKey(alg, priv)
}

// Alg returns the JWS algorithm name, such as "ES256".
func (k *VAPIDKey) Alg() string { return k.alg.String() }

// PublicRaw returns the public key as an uncompressed point (65 bytes for
// ES256), the form of the "k" parameter of RFC 8292 §3.2 and of a Push 2.0
// <jwt key='…'> attribute once base64-encoded. The slice is a copy.
func (k *VAPIDKey) PublicRaw() []byte { return append([]byte(nil), k.pub...) }

// PKCS8 returns the private key as PKCS#8 DER, the inverse of ParseVAPIDKey
// after base64. The result is secret and owned by the caller.
func (k *VAPIDKey) PKCS8() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, errors.New("webpush: encoding the VAPID key as PKCS#8 failed")
	}
	return der, nil
}

// Fingerprint returns a short, stable, non-secret identifier of the key
// (derived from alg and the public key only), for logs.
func (k *VAPIDKey) Fingerprint() string { return EncodeBase64URL(k.id[:9]) }

// String redacts the private key.
func (k *VAPIDKey) String() string {
	if k == nil {
		return "webpush.VAPIDKey(nil)"
	}
	return "webpush.VAPIDKey(" + k.Alg() + " " + k.Fingerprint() + ")"
}

// GoString is String for %#v.
func (k *VAPIDKey) GoString() string { return k.String() }

// Claim is one JWT claim as Push 2.0 carries it: a name and a string value.
type Claim struct {
	Name  string
	Value string
}

// numericClaims are the registered claims whose values are NumericDate
// (RFC 7519 §4.1.4–4.1.6); their string values must be integer seconds.
var numericClaims = map[string]bool{"exp": true, "nbf": true, "iat": true}

// Signer signs VAPID tokens (RFC 8292 §2) and caches them.
//
// A cached token is reused for the same key, claims and subject until it is
// within TokenRefresh of its "exp"; then a new one is signed. The cache is
// an LRU of at most its size entries, keyed by a SHA-256 over the key's
// public identity and the claims: it holds tokens, never private keys. The
// zero Signer is ready to use with DefaultCacheSize. A Signer is safe for
// concurrent use and must not be copied after first use.
type Signer struct {
	mu      sync.Mutex
	max     int
	order   *list.List // of *tokenEntry, most recently used first
	entries map[[sha256.Size]byte]*list.Element
}

type tokenEntry struct {
	key   [sha256.Size]byte
	token string
	exp   time.Time
}

// NewSigner returns a Signer that caches at most size tokens; size <= 0
// means DefaultCacheSize.
func NewSigner(size int) *Signer {
	return &Signer{max: size}
}

// Len reports the number of cached tokens.
func (s *Signer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Sign returns a compact JWS (RFC 7515 §7.1) JWT signed with key over claims,
// with "exp" set to now+TokenLifetime and "sub" set to sub, unless claims
// already contain them (RFC 8292 §2, §2.1). An empty sub adds no "sub".
//
// Claim values are strings, except that "exp", "nbf" and "iat" must be
// integer seconds and are encoded as numbers. A given "exp" must lie after now
// and no more than MaxTokenLifetime ahead. Claim names must be non-empty and
// unique. RFC 8292 §2 requires an "aud" claim with the push resource's
// origin; Sign leaves that to the caller.
//
// A token already in the cache is returned as long as now is at least
// TokenRefresh before its "exp" and its "exp" is no more than
// MaxTokenLifetime after now (which guards against a clock that went back).
func (s *Signer) Sign(key *VAPIDKey, claims []Claim, sub string, now time.Time) (string, error) {
	if key == nil {
		return "", errors.New("webpush: no VAPID key was given")
	}
	sorted := make([]Claim, len(claims))
	copy(sorted, claims)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	hasExp, hasSub := false, false
	var exp time.Time
	for i, c := range sorted {
		if c.Name == "" {
			return "", errors.New("webpush: a JWT claim has an empty name")
		}
		if i > 0 && sorted[i-1].Name == c.Name {
			return "", fmt.Errorf("webpush: the JWT claim %q is given more than once", truncate(c.Name, 32))
		}
		if numericClaims[c.Name] {
			n, err := strconv.ParseInt(c.Value, 10, 64)
			if err != nil {
				return "", fmt.Errorf("webpush: the JWT claim %q must be an integer number of seconds", c.Name)
			}
			if c.Name == "exp" {
				hasExp = true
				exp = time.Unix(n, 0)
				if !exp.After(now) || exp.Sub(now) > MaxTokenLifetime {
					return "", errors.New("webpush: the JWT claim \"exp\" must lie in the next 24 hours (RFC 8292 §2)")
				}
			}
		}
		if c.Name == "sub" {
			hasSub = true
		}
	}
	if !hasSub && sub != "" {
		// Insert in order, so that a sub given here and one given as a
		// claim hash alike.
		i := sort.Search(len(sorted), func(i int) bool { return sorted[i].Name >= "sub" })
		sorted = append(sorted, Claim{})
		copy(sorted[i+1:], sorted[i:])
		sorted[i] = Claim{"sub", sub}
	}

	ck := cacheKey(key, sorted)
	if tok, ok := s.lookup(ck, now); ok {
		return tok, nil
	}

	if !hasExp {
		exp = now.Add(TokenLifetime).Truncate(time.Second)
	}
	tok := jwt.New()
	tok.Options().Enable(jwt.FlattenAudience) // "aud" as a string, as push services expect
	if err := tok.Set(jwt.ExpirationKey, exp); err != nil {
		return "", errors.New("webpush: setting the JWT claim \"exp\" failed")
	}
	for _, c := range sorted {
		var v any = c.Value
		if numericClaims[c.Name] {
			n, _ := strconv.ParseInt(c.Value, 10, 64) // checked above
			v = time.Unix(n, 0)
		}
		if err := tok.Set(c.Name, v); err != nil {
			return "", fmt.Errorf("webpush: the JWT claim %q cannot be set", truncate(c.Name, 32))
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(key.alg, key.priv))
	if err != nil {
		return "", fmt.Errorf("webpush: signing the VAPID token with %s failed", key.Alg())
	}
	s.store(ck, string(signed), exp)
	return string(signed), nil
}

// cacheKey hashes what determines a token apart from its expiry: the key's
// public identity and the claims, sorted and length-prefixed so that no two
// claim sets collide by concatenation.
func cacheKey(key *VAPIDKey, sorted []Claim) [sha256.Size]byte {
	h := sha256.New()
	h.Write(key.id[:])
	var n [8]byte
	for _, c := range sorted {
		binary.BigEndian.PutUint64(n[:], uint64(len(c.Name)))
		h.Write(n[:])
		h.Write([]byte(c.Name))
		binary.BigEndian.PutUint64(n[:], uint64(len(c.Value)))
		h.Write(n[:])
		h.Write([]byte(c.Value))
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

func (s *Signer) lookup(k [sha256.Size]byte, now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.entries[k]
	if !ok {
		return "", false
	}
	e := el.Value.(*tokenEntry)
	if !now.Before(e.exp.Add(-TokenRefresh)) || e.exp.Sub(now) > MaxTokenLifetime {
		s.order.Remove(el)
		delete(s.entries, k)
		return "", false
	}
	s.order.MoveToFront(el)
	return e.token, true
}

func (s *Signer) store(k [sha256.Size]byte, token string, exp time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = make(map[[sha256.Size]byte]*list.Element)
		s.order = list.New()
	}
	if s.max <= 0 {
		s.max = DefaultCacheSize
	}
	if el, ok := s.entries[k]; ok {
		// A concurrent Sign for the same claims got here first; keep the
		// later expiry.
		e := el.Value.(*tokenEntry)
		if exp.After(e.exp) {
			e.token, e.exp = token, exp
		}
		s.order.MoveToFront(el)
		return
	}
	s.entries[k] = s.order.PushFront(&tokenEntry{key: k, token: token, exp: exp})
	for len(s.entries) > s.max {
		old := s.order.Back()
		s.order.Remove(old)
		delete(s.entries, old.Value.(*tokenEntry).key)
	}
}

// Verify checks token the way a push service would (RFC 8292 §3): the
// signature must verify with the public key pubRaw (an uncompressed point;
// its length selects ES256, ES384 or ES512), the JWS "alg" must be that
// algorithm, "exp" must be present, in the future, and at most
// MaxTokenLifetime ahead, and "nbf"/"iat", if present, must not be in the
// future. It uses the current time; see VerifyAt.
//
// The returned map holds the claims: NumericDate claims as int64 seconds,
// and a single-valued "aud" as a string.
func Verify(token string, pubRaw []byte) (map[string]any, error) {
	return VerifyAt(token, pubRaw, time.Now())
}

// VerifyAt is Verify at the time now.
//
// It is a separate path from Signer: it parses with jwx's JWT parser with
// signature verification against pubRaw, never trusting the token's header
// to choose the algorithm (RFC 8725 §3.1).
func VerifyAt(token string, pubRaw []byte, now time.Time) (map[string]any, error) {
	var alg jwa.SignatureAlgorithm
	var curve elliptic.Curve
	switch len(pubRaw) {
	case 65:
		alg, curve = jwa.ES256, elliptic.P256()
	case 97:
		alg, curve = jwa.ES384, elliptic.P384()
	case 133:
		alg, curve = jwa.ES512, elliptic.P521()
	default:
		return nil, fmt.Errorf("webpush: the VAPID public key is %d bytes, which is no uncompressed P-256, P-384 or P-521 point", len(pubRaw))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, pubRaw)
	if err != nil {
		return nil, fmt.Errorf("webpush: the VAPID public key is not a valid uncompressed %s point", curve.Params().Name)
	}
	tok, err := jwt.Parse([]byte(token), jwt.WithKey(alg, pub), jwt.WithValidate(false))
	if err != nil {
		return nil, fmt.Errorf("webpush: the VAPID token is malformed or its %s signature does not verify with the given public key", alg)
	}
	err = jwt.Validate(tok,
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithRequiredClaim(jwt.ExpirationKey))
	if err != nil {
		return nil, fmt.Errorf("webpush: the VAPID token's claims are not valid now: %v", err)
	}
	if tok.Expiration().Sub(now) > MaxTokenLifetime {
		return nil, errors.New("webpush: the VAPID token's \"exp\" is more than 24 hours ahead (RFC 8292 §2)")
	}
	m, err := tok.AsMap(context.Background())
	if err != nil {
		return nil, errors.New("webpush: the VAPID token's claims cannot be read")
	}
	for name, v := range m {
		switch x := v.(type) {
		case time.Time:
			m[name] = x.Unix()
		case []string:
			if name == jwt.AudienceKey && len(x) == 1 {
				m[name] = x[0]
			}
		}
	}
	return m, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func keyKind(k any) string {
	switch k.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA"
	default:
		s := fmt.Sprintf("%T", k)
		switch {
		case strings.Contains(s, "rsa"):
			return "RSA"
		case strings.Contains(s, "ed25519"):
			return "Ed25519"
		case strings.Contains(s, "ecdh"):
			return "X25519/ECDH"
		}
		return "non-ECDSA"
	}
}

func curveName(c elliptic.Curve) string {
	if c == nil || c.Params() == nil {
		return "unknown"
	}
	return c.Params().Name
}
