package webpush

import (
	"bytes"
	"encoding/base64"
	"testing"
)

// FuzzDecodeBase64 checks that DecodeBase64 never panics, agrees with the
// standard library on canonical inputs, and that whatever it accepts
// re-encodes to something it decodes to the same bytes.
func FuzzDecodeBase64(f *testing.F) {
	for _, s := range []string{"", "QQ==", "QQ", "+/-_", " Q U\tJ\nD\r\n", "QQ=", "Q=Q=", "====", rfc8291.body, "\xff\x00="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := DecodeBase64(s)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if want, serr := enc.Strict().DecodeString(s); serr == nil {
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("DecodeBase64(%q) = %x, %v; the standard library decodes it to %x", s, got, err, want)
				}
			}
		}
		if err != nil {
			return
		}
		again, err := DecodeBase64(EncodeBase64URL(got))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("re-encoding %x does not round-trip", got)
		}
	})
}

// FuzzParseUAPublic checks that ParseUAPublic never panics and only accepts
// 65-byte uncompressed points, returned unchanged.
func FuzzParseUAPublic(f *testing.F) {
	good, _ := DecodeBase64(rfc8291.uaPublic)
	f.Add(good)
	f.Add(good[:33])
	f.Add(append([]byte{4}, make([]byte, 64)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := ParseUAPublic(b)
		if err != nil {
			return
		}
		if len(b) != 65 || b[0] != 4 || !bytes.Equal(pub.Bytes(), b) {
			t.Fatalf("accepted %x", b)
		}
	})
}

// FuzzDecrypt feeds arbitrary bodies to Decrypt under the RFC 8291 example
// keys. It must never panic, and what it returns must be shorter than the
// body by at least the header, a delimiter and a tag.
func FuzzDecrypt(f *testing.F) {
	k, ua, _ := rfcKeys(f)
	body, _ := DecodeBase64(rfc8291.body)
	f.Add(body)
	f.Add(body[:HeaderLen])
	f.Add(body[:HeaderLen+17])
	short := append([]byte(nil), body...)
	short[19] = 18 // rs 18: many tiny records
	f.Add(short)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		pt, err := Decrypt(ua, k.AuthSecret, b)
		if err == nil && len(pt) > len(b)-Overhead {
			t.Fatalf("%d-byte plaintext from a %d-byte body", len(pt), len(b))
		}
	})
}
