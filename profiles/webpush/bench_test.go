package webpush

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

// BenchmarkEncrypt is the full RFC 8291 encryption of a 1 KiB payload:
// ephemeral key generation, ECDH, three HKDF steps and one AES-128-GCM seal.
func BenchmarkEncrypt(b *testing.B) {
	k, _ := newSubscription(b)
	pt := make([]byte, 1024)
	rand.Read(pt)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encrypt(k, pt, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrimitives is the floor under BenchmarkEncrypt: one P-256 ECDH
// with a fixed key, one HKDF and one AES-128-GCM seal of the same 1 KiB.
// The difference is mostly ephemeral key generation (a fixed-base scalar
// multiplication) and the two further HKDF steps.
func BenchmarkPrimitives(b *testing.B) {
	k, _ := newSubscription(b)
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	pt := make([]byte, 1024+1)
	rand.Read(pt)
	salt := make([]byte, 16)
	nonce := make([]byte, 12)
	out := make([]byte, 0, len(pt)+16)
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		secret, err := eph.ECDH(k.UAPublic)
		if err != nil {
			b.Fatal(err)
		}
		key, err := hkdf.Key(sha256.New, secret, salt, "Content-Encoding: aes128gcm\x00", 16)
		if err != nil {
			b.Fatal(err)
		}
		block, _ := aes.NewCipher(key)
		gcm, _ := cipher.NewGCM(block)
		out = gcm.Seal(out[:0], nonce, pt, nil)
	}
}

// BenchmarkDecrypt is the user agent's side, for comparison.
func BenchmarkDecrypt(b *testing.B) {
	k, ua := newSubscription(b)
	pt := make([]byte, 1024)
	body, _ := Encrypt(k, pt, 0)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decrypt(ua, k.AuthSecret, body); err != nil {
			b.Fatal(err)
		}
	}
}

func benchClaims() []Claim {
	return []Claim{{"aud", "https://push.example.net"}}
}

// BenchmarkSignCached is a Sign call answered from the cache: hashing the
// claims and a map lookup under the mutex.
func BenchmarkSignCached(b *testing.B) {
	key := mustVAPID(b, "ES256")
	s := NewSigner(0)
	now := time.Now()
	if _, err := s.Sign(key, benchClaims(), "mailto:ops@example.org", now); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Sign(key, benchClaims(), "mailto:ops@example.org", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignUncached signs a new ES256 token every time (each call has
// a distinct "aud", and the cache is small enough to keep evicting).
func BenchmarkSignUncached(b *testing.B) {
	key := mustVAPID(b, "ES256")
	s := NewSigner(1)
	now := time.Now()
	auds := make([][]Claim, 1024)
	for i := range auds {
		auds[i] = []Claim{{"aud", fmt.Sprintf("https://push%d.example.net", i)}}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Sign(key, auds[i%len(auds)], "mailto:ops@example.org", now); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
