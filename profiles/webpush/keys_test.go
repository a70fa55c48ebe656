package webpush

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

func TestDecodeBase64(t *testing.T) {
	bin := []byte{0xfb, 0xff, 0xbf, 0x00, 0x3e, 0x3f}
	tests := []struct {
		in   string
		want []byte // nil means an error is expected
	}{
		{"", []byte{}},
		{"QQ==", []byte("A")},
		{"QQ", []byte("A")},
		{"QUI=", []byte("AB")},
		{"QUI", []byte("AB")},
		{"QUJD", []byte("ABC")},
		{base64.StdEncoding.EncodeToString(bin), bin},
		{base64.RawStdEncoding.EncodeToString(bin), bin},
		{base64.URLEncoding.EncodeToString(bin), bin},
		{base64.RawURLEncoding.EncodeToString(bin), bin},
		{"+/-_", []byte{0xfb, 0xff, 0xbf}}, // mixed alphabets
		{" Q U\tJ\nD\r\n", []byte("ABC")},
		{"QUJD\nQUJD\n", []byte("ABCABC")},
		{"QQ=\n=", []byte("A")},
		{"QQ=", nil},
		{"QQ===", nil},
		{"Q", nil},
		{"QUJDQ", nil},
		{"Q=Q=", nil},
		{"QQ==QQ==", nil},
		{"QU*D", nil},
		{"QUJD\x00", nil},
		{"QUJD\u00a0", nil}, // non-ASCII space is not whitespace here
		{"=", nil},
	}
	for _, tc := range tests {
		got, err := DecodeBase64(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("DecodeBase64(%q) = %x, want an error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("DecodeBase64(%q): %v", tc.in, err)
			continue
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("DecodeBase64(%q) = %x, want %x", tc.in, got, tc.want)
		}
	}
	if _, err := DecodeBase64("c2VjcmV0*"); err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("error echoes input: %v", err)
	}
}

// leaks reports whether msg contains b in any of the encodings a log reader
// could recognise.
func leaks(msg string, b []byte) bool {
	if len(b) < 4 {
		return false
	}
	for _, enc := range []string{
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		fmt.Sprint(b), string(b),
	} {
		// A long enough prefix of the encoding is a leak too.
		if n := min(len(enc), 12); strings.Contains(msg, enc[:n]) {
			return true
		}
	}
	return false
}

func TestParseUAPublic(t *testing.T) {
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	good := ua.PublicKey().Bytes()
	with := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	p384, _ := ecdh.P384().GenerateKey(rand.Reader)

	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"valid", good, true},
		{"RFC 8291 vector", mustB64(t, rfc8291.uaPublic), true},
		{"empty", nil, false},
		{"64 bytes", good[:64], false},
		{"66 bytes", append(append([]byte(nil), good...), 0), false},
		{"compressed", append([]byte{0x02 | good[64]&1}, good[1:33]...), false},
		{"hybrid prefix", with(func(b []byte) []byte { b[0] = 0x06 | b[64]&1; return b }), false},
		{"prefix 0x05", with(func(b []byte) []byte { b[0] = 0x05; return b }), false},
		{"off curve", with(func(b []byte) []byte { b[64] ^= 1; return b }), false},
		{"all zero point", append([]byte{4}, make([]byte, 64)...), false},
		{"x beyond p", append([]byte{4}, bytes.Repeat([]byte{0xff}, 64)...), false},
		{"P-384 point", p384.PublicKey().Bytes(), false},
	}
	for _, tc := range tests {
		pub, err := ParseUAPublic(tc.in)
		if tc.ok {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if !bytes.Equal(pub.Bytes(), tc.in) {
				t.Errorf("%s: key bytes changed", tc.name)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if leaks(err.Error(), tc.in) || leaks(err.Error(), tc.in[min(1, len(tc.in)):]) {
			t.Errorf("%s: error echoes key material: %v", tc.name, err)
		}
	}
}

func TestParseAuthSecretAndKeys(t *testing.T) {
	for _, n := range []int{0, 1, 15, 17, 32} {
		b := bytes.Repeat([]byte{0xa5}, n)
		err := ParseAuthSecret(b)
		if err == nil {
			t.Errorf("ParseAuthSecret accepted %d bytes", n)
		} else if leaks(err.Error(), b) {
			t.Errorf("error echoes the secret: %v", err)
		}
	}
	if err := ParseAuthSecret(make([]byte, 16)); err != nil {
		t.Error(err)
	}

	secret := "c2VjcmV0LXNlY3JldC14eA" // 16 bytes
	tests := []struct {
		name, ua, auth string
		ok             bool
	}{
		{"vector", rfc8291.uaPublic, rfc8291.authSecret, true},
		{"std alphabet, padded", base64.StdEncoding.EncodeToString(mustB64(t, rfc8291.uaPublic)),
			base64.StdEncoding.EncodeToString(mustB64(t, rfc8291.authSecret)), true},
		{"bad ua base64", "!!" + rfc8291.uaPublic, rfc8291.authSecret, false},
		{"bad auth base64", rfc8291.uaPublic, secret + "*", false},
		{"short auth", rfc8291.uaPublic, secret[:12], false},
		{"short ua", rfc8291.uaPublic[:40], secret, false},
	}
	for _, tc := range tests {
		k, err := ParseKeys(tc.ua, tc.auth)
		if tc.ok != (err == nil) {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if err != nil && (strings.Contains(err.Error(), secret[:8]) || strings.Contains(err.Error(), rfc8291.uaPublic[:12])) {
			t.Errorf("%s: error echoes input: %v", tc.name, err)
		}
		if err == nil {
			if err := k.Validate(); err != nil {
				t.Errorf("%s: Validate: %v", tc.name, err)
			}
			for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k)} {
				if leaks(s, k.AuthSecret) {
					t.Errorf("%s: formatting Keys shows the auth secret: %s", tc.name, s)
				}
			}
		}
	}
}

func TestParseUAPrivate(t *testing.T) {
	if _, err := ParseUAPrivate(mustB64(t, rfc8291.uaPrivate)); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{nil, make([]byte, 31), make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)} {
		_, err := ParseUAPrivate(b)
		if err == nil {
			t.Errorf("ParseUAPrivate(%x) accepted", b)
		} else if leaks(err.Error(), b) {
			t.Errorf("error echoes key: %v", err)
		}
	}
}
