package webpush

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func pkcs8(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wrap splits s into 64-character lines as a PEM body would be.
func wrap(s string) string {
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

func TestParseVAPIDKey(t *testing.T) {
	p256 := ecKey(t, elliptic.P256())
	der := pkcs8(t, p256)
	std := base64.StdEncoding.EncodeToString(der)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	sec1, _ := x509.MarshalECPrivateKey(p256)

	tests := []struct {
		name, alg, in string
		wantErr       string // substring; "" means success
	}{
		{"ES256 std", "ES256", std, ""},
		{"ES256 url raw", "ES256", base64.RawURLEncoding.EncodeToString(der), ""},
		{"ES256 PEM body lines", "ES256", wrap(std), ""},
		{"ES256 full PEM", "ES256", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), ""},
		{"ES384", "ES384", base64.StdEncoding.EncodeToString(pkcs8(t, ecKey(t, elliptic.P384()))), ""},
		{"ES512", "ES512", base64.StdEncoding.EncodeToString(pkcs8(t, ecKey(t, elliptic.P521()))), ""},
		{"P-256 key for ES384", "ES384", std, "needs P-384"},
		{"P-384 key for ES256", "ES256", base64.StdEncoding.EncodeToString(pkcs8(t, ecKey(t, elliptic.P384()))), "needs P-256"},
		{"RSA key", "ES256", base64.StdEncoding.EncodeToString(pkcs8(t, rsaKey)), "RSA key"},
		{"Ed25519 key", "ES256", base64.StdEncoding.EncodeToString(pkcs8(t, edKey)), "Ed25519 key"},
		{"SEC 1 key", "ES256", base64.StdEncoding.EncodeToString(sec1), "SEC 1"},
		{"not base64", "ES256", std[:20] + "*" + std[20:], "base64"},
		{"not DER", "ES256", base64.StdEncoding.EncodeToString([]byte("definitely not a key")), "not a PKCS#8"},
		{"truncated DER", "ES256", base64.StdEncoding.EncodeToString(der[:len(der)-3]), "not a PKCS#8"},
		{"HS256", "HS256", std, "not supported"},
		{"lower-case alg", "es256", std, "not supported"},
		{"empty alg", "", std, "not supported"},
		{"broken PEM", "ES256", "-----BEGIN PRIVATE KEY-----\n" + std, "PEM"},
	}
	for _, tc := range tests {
		k, err := ParseVAPIDKey(tc.alg, tc.in)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			if k.Alg() != tc.alg {
				t.Errorf("%s: Alg = %s", tc.name, k.Alg())
			}
			raw := k.PublicRaw()
			if raw[0] != 4 || len(raw) != map[string]int{"ES256": 65, "ES384": 97, "ES512": 133}[tc.alg] {
				t.Errorf("%s: PublicRaw is %d bytes", tc.name, len(raw))
			}
			raw[1] ^= 0xff // PublicRaw must be a copy
			if k.PublicRaw()[1] == raw[1] {
				t.Errorf("%s: PublicRaw aliases the key", tc.name)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %q, want it to mention %q", tc.name, err, tc.wantErr)
		}
		if strings.Contains(err.Error(), std[30:50]) {
			t.Errorf("%s: error echoes the key: %v", tc.name, err)
		}
	}

	// Formatting a key never shows the private scalar or the PKCS#8.
	k, err := ParseVAPIDKey("ES256", std)
	if err != nil {
		t.Fatal(err)
	}
	d := p256.D.FillBytes(make([]byte, 32))
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%v", *k)} {
		if leaks(s, d) || strings.Contains(s, std[40:60]) || strings.Contains(s, p256.D.String()[:12]) {
			t.Errorf("formatting a VAPIDKey shows the private key: %s", s)
		}
	}
	if got, err := k.PKCS8(); err != nil || string(got) != string(der) {
		t.Errorf("PKCS8 does not round-trip: %v", err)
	}
}

func mustVAPID(t testing.TB, alg string) *VAPIDKey {
	t.Helper()
	k, err := GenerateVAPIDKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// payload decodes the claims of a compact JWS without verifying it.
func payload(t *testing.T, token string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, claims
}

func TestSign(t *testing.T) {
	key := mustVAPID(t, "ES256")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	aud := Claim{"aud", "https://push.example.net"}
	s := NewSigner(16)

	tests := []struct {
		name    string
		claims  []Claim
		sub     string
		want    map[string]any // claims, numbers as float64
		wantErr string
	}{
		{"aud and default sub", []Claim{aud}, "mailto:ops@example.org",
			map[string]any{"aud": "https://push.example.net", "sub": "mailto:ops@example.org", "exp": float64(now.Add(12 * time.Hour).Unix())}, ""},
		{"sub claim wins", []Claim{aud, {"sub", "https://example.org/contact"}}, "mailto:ignored@example.org",
			map[string]any{"aud": "https://push.example.net", "sub": "https://example.org/contact", "exp": float64(now.Add(12 * time.Hour).Unix())}, ""},
		{"no sub", []Claim{aud}, "",
			map[string]any{"aud": "https://push.example.net", "exp": float64(now.Add(12 * time.Hour).Unix())}, ""},
		{"given exp", []Claim{aud, {"exp", strconv.FormatInt(now.Add(2*time.Hour).Unix(), 10)}}, "",
			map[string]any{"aud": "https://push.example.net", "exp": float64(now.Add(2 * time.Hour).Unix())}, ""},
		{"private claim and iat", []Claim{aud, {"iat", strconv.FormatInt(now.Unix(), 10)}, {"x-app", "42"}}, "",
			map[string]any{"aud": "https://push.example.net", "iat": float64(now.Unix()), "x-app": "42", "exp": float64(now.Add(12 * time.Hour).Unix())}, ""},
		{"exp beyond 24h", []Claim{aud, {"exp", strconv.FormatInt(now.Add(25*time.Hour).Unix(), 10)}}, "", nil, "24 hours"},
		{"exp in the past", []Claim{aud, {"exp", strconv.FormatInt(now.Add(-time.Minute).Unix(), 10)}}, "", nil, "24 hours"},
		{"exp not a number", []Claim{aud, {"exp", "tomorrow"}}, "", nil, "integer"},
		{"duplicate claim", []Claim{aud, aud}, "", nil, "more than once"},
		{"empty name", []Claim{{"", "x"}}, "", nil, "empty name"},
	}
	for _, tc := range tests {
		tok, err := s.Sign(key, tc.claims, tc.sub, now)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		header, claims := payload(t, tok)
		if header["alg"] != "ES256" {
			t.Errorf("%s: header %v", tc.name, header)
		}
		if fmt.Sprint(claims) != fmt.Sprint(tc.want) {
			t.Errorf("%s: claims\n got %v\nwant %v", tc.name, claims, tc.want)
		}
		if exp := int64(claims["exp"].(float64)); exp-now.Unix() > int64(MaxTokenLifetime/time.Second) || exp <= now.Unix() {
			t.Errorf("%s: exp %d is not within 24h of now", tc.name, exp)
		}
		verified, err := VerifyAt(tok, key.PublicRaw(), now)
		if err != nil {
			t.Errorf("%s: VerifyAt: %v", tc.name, err)
			continue
		}
		if verified["exp"] != int64(tc.want["exp"].(float64)) || verified["aud"] != tc.want["aud"] {
			t.Errorf("%s: VerifyAt claims %v", tc.name, verified)
		}
	}
	if _, err := s.Sign(nil, []Claim{aud}, "", now); err == nil {
		t.Error("Sign with a nil key succeeded")
	}
}

func TestSignCache(t *testing.T) {
	key := mustVAPID(t, "ES256")
	key2 := mustVAPID(t, "ES256")
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	aud := Claim{"aud", "https://push.example.net"}
	other := Claim{"aud", "https://other.example.net"}
	var s Signer // the zero Signer works

	sign := func(k *VAPIDKey, claims []Claim, sub string, now time.Time) string {
		t.Helper()
		tok, err := s.Sign(k, claims, sub, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	first := sign(key, []Claim{aud, {"x", "1"}}, "mailto:a@example.org", t0)
	steps := []struct {
		name   string
		key    *VAPIDKey
		claims []Claim
		sub    string
		at     time.Duration
		same   bool
	}{
		{"same request", key, []Claim{aud, {"x", "1"}}, "mailto:a@example.org", 0, true},
		{"claims in another order", key, []Claim{{"x", "1"}, aud}, "mailto:a@example.org", time.Minute, true},
		{"sub given as a claim instead", key, []Claim{aud, {"x", "1"}, {"sub", "mailto:a@example.org"}}, "", time.Minute, true},
		{"just before the refresh window", key, []Claim{aud, {"x", "1"}}, "mailto:a@example.org", 11*time.Hour - time.Second, true},
		{"other aud", key, []Claim{other, {"x", "1"}}, "mailto:a@example.org", 0, false},
		{"other sub", key, []Claim{aud, {"x", "1"}}, "mailto:b@example.org", 0, false},
		{"other key", key2, []Claim{aud, {"x", "1"}}, "mailto:a@example.org", 0, false},
		{"claim value shifted into name", key, []Claim{aud, {"x1", ""}}, "mailto:a@example.org", 0, false},
	}
	for _, st := range steps {
		got := sign(st.key, st.claims, st.sub, t0.Add(st.at))
		if (got == first) != st.same {
			t.Errorf("%s: same token = %v, want %v", st.name, got == first, st.same)
		}
	}

	// Within TokenRefresh of exp the token is replaced, and the new one
	// expires TokenLifetime after the new now.
	refreshAt := t0.Add(TokenLifetime - TokenRefresh)
	renewed := sign(key, []Claim{aud, {"x", "1"}}, "mailto:a@example.org", refreshAt)
	if renewed == first {
		t.Fatal("token not renewed within an hour of its expiry")
	}
	if _, c := payload(t, renewed); int64(c["exp"].(float64)) != refreshAt.Add(TokenLifetime).Unix() {
		t.Fatalf("renewed exp = %v", c["exp"])
	}
	if again := sign(key, []Claim{aud, {"x", "1"}}, "mailto:a@example.org", refreshAt.Add(time.Minute)); again != renewed {
		t.Fatal("renewed token not cached")
	}
	// A clock that went back more than 12 hours must not get a token that
	// expires more than 24 hours ahead of it.
	back := refreshAt.Add(-13 * time.Hour)
	if tok := sign(key, []Claim{aud, {"x", "1"}}, "mailto:a@example.org", back); tok == renewed {
		t.Fatal("cached token reused although its exp is more than 24h ahead")
	}
}

func TestSignerBoundedAndConcurrent(t *testing.T) {
	key := mustVAPID(t, "ES256")
	s := NewSigner(8)
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				aud := Claim{"aud", fmt.Sprintf("https://push%d.example.net", (g*7+i)%20)}
				tok, err := s.Sign(key, []Claim{aud}, "mailto:a@example.org", now)
				if err != nil {
					errs <- err
					return
				}
				if i%10 == 0 {
					if _, err := VerifyAt(tok, key.PublicRaw(), now); err != nil {
						errs <- err
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := s.Len(); n > 8 || n == 0 {
		t.Fatalf("cache holds %d tokens, want 1..8", n)
	}
}

func TestVerify(t *testing.T) {
	key := mustVAPID(t, "ES256")
	key384 := mustVAPID(t, "ES384")
	other := mustVAPID(t, "ES256")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := NewSigner(0)
	aud := []Claim{{"aud", "https://push.example.net"}}
	good, err := s.Sign(key, aud, "mailto:a@example.org", now)
	if err != nil {
		t.Fatal(err)
	}
	tok384, err := s.Sign(key384, aud, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyAt(tok384, key384.PublicRaw(), now); err != nil {
		t.Fatalf("ES384: %v", err)
	}
	if _, err := Verify(good, key.PublicRaw()); err == nil {
		// The real clock is not 2026-03-01 12:00 within 12 hours in
		// any run that matters; Verify must use time.Now.
		if time.Since(now).Abs() > 12*time.Hour {
			t.Error("Verify accepted a token outside its validity at the current time")
		}
	}

	// Tokens made outside Signer, to cover what Signer refuses to make.
	raw := func(claims map[string]any, alg jwa.SignatureAlgorithm, k any) string {
		tok := jwt.New()
		for n, v := range claims {
			if err := tok.Set(n, v); err != nil {
				t.Fatal(err)
			}
		}
		b, err := jwt.Sign(tok, jwt.WithKey(alg, k))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"https://evil.example","exp":1772409600}`)) + "." + parts[2]
	unsigned, _ := jws.Sign([]byte(`{"exp":1772409600}`), jws.WithInsecureNoSignature())
	hmacKey, _ := jwk.FromRaw([]byte("0123456789abcdef0123456789abcdef"))

	tests := []struct {
		name  string
		token string
		pub   []byte
		at    time.Time
	}{
		{"wrong key", good, other.PublicRaw(), now},
		{"ES384 token, P-256 key", tok384, key.PublicRaw(), now},
		{"ES256 token, P-384 key", good, key384.PublicRaw(), now},
		{"tampered payload", tampered, key.PublicRaw(), now},
		{"expired", good, key.PublicRaw(), now.Add(13 * time.Hour)},
		{"exp too far ahead", raw(map[string]any{"exp": now.Add(25 * time.Hour)}, jwa.ES256, key.priv), key.PublicRaw(), now},
		{"no exp", raw(map[string]any{"aud": "https://push.example.net"}, jwa.ES256, key.priv), key.PublicRaw(), now},
		{"nbf in the future", raw(map[string]any{"exp": now.Add(time.Hour), "nbf": now.Add(30 * time.Minute)}, jwa.ES256, key.priv), key.PublicRaw(), now},
		{"alg none", string(unsigned), key.PublicRaw(), now},
		{"HS256", raw(map[string]any{"exp": now.Add(time.Hour)}, jwa.HS256, hmacKey), key.PublicRaw(), now},
		{"garbage", "not.a.token", key.PublicRaw(), now},
		{"empty", "", key.PublicRaw(), now},
		{"compressed public key", good, append([]byte{2 | key.PublicRaw()[64]&1}, key.PublicRaw()[1:33]...), now},
		{"off-curve public key", good, func() []byte { b := key.PublicRaw(); b[64] ^= 1; return b }(), now},
	}
	for _, tc := range tests {
		claims, err := VerifyAt(tc.token, tc.pub, tc.at)
		t.Logf("%s: %v", tc.name, err)
		if err == nil {
			t.Errorf("%s: accepted, claims %v", tc.name, claims)
		}
	}
}
