package webpush

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// rfc8291 holds the example of RFC 8291 Appendix A (and §5), base64url as
// printed there with the line breaks removed.
var rfc8291 = struct {
	plaintext, asPrivate, asPublic, uaPrivate, uaPublic, salt, authSecret, body string
}{
	plaintext:  "When I grow up, I want to be a watermelon",
	asPrivate:  "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw",
	asPublic:   "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
	uaPrivate:  "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
	uaPublic:   "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
	salt:       "DGv6ra1nlYgDCS1FRnbzlw",
	authSecret: "BTBZMqHH6r4Tts7J_aSIgg",
	body: "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml" +
		"mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT" +
		"pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := DecodeBase64(s)
	if err != nil {
		t.Fatalf("test vector does not decode: %v", err)
	}
	return b
}

func rfcKeys(t testing.TB) (Keys, *ecdh.PrivateKey, *ecdh.PrivateKey) {
	t.Helper()
	k, err := ParseKeys(rfc8291.uaPublic, rfc8291.authSecret)
	if err != nil {
		t.Fatal(err)
	}
	ua, err := ParseUAPrivate(mustB64(t, rfc8291.uaPrivate))
	if err != nil {
		t.Fatal(err)
	}
	as, err := ecdh.P256().NewPrivateKey(mustB64(t, rfc8291.asPrivate))
	if err != nil {
		t.Fatal(err)
	}
	return k, ua, as
}

func newSubscription(t testing.TB) (Keys, *ecdh.PrivateKey) {
	t.Helper()
	ua, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, AuthSecretLen)
	rand.Read(auth)
	return Keys{UAPublic: ua.PublicKey(), AuthSecret: auth}, ua
}

func TestRFC8291AppendixA(t *testing.T) {
	k, ua, as := rfcKeys(t)
	want := mustB64(t, rfc8291.body)

	// The vector's keys are consistent with each other.
	if !bytes.Equal(as.PublicKey().Bytes(), mustB64(t, rfc8291.asPublic)) {
		t.Fatal("as_public of the vector does not match as_private")
	}
	if !bytes.Equal(ua.PublicKey().Bytes(), mustB64(t, rfc8291.uaPublic)) {
		t.Fatal("ua_public of the vector does not match ua_private")
	}

	got, err := encrypt(k, []byte(rfc8291.plaintext), 0, as, mustB64(t, rfc8291.salt))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encrypt differs from RFC 8291 Appendix A\n got %s\nwant %s", hex.EncodeToString(got), hex.EncodeToString(want))
	}
	if len(got) != EncryptedSize(len(rfc8291.plaintext), 0) {
		t.Fatalf("len = %d, EncryptedSize = %d", len(got), EncryptedSize(len(rfc8291.plaintext), 0))
	}

	pt, err := Decrypt(ua, k.AuthSecret, want)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != rfc8291.plaintext {
		t.Fatalf("Decrypt = %q", pt)
	}
}

func TestEncryptedSizeAndBucketPad(t *testing.T) {
	if got := EncryptedSize(41, 0); got != 144 {
		t.Fatalf("EncryptedSize(41, 0) = %d, want 144 (RFC 8291 Appendix A)", got)
	}
	if MaxPlaintext != 3993 {
		t.Fatalf("MaxPlaintext = %d, want 3993 (RFC 8291 §4)", MaxPlaintext)
	}
	tests := []struct {
		n, max  int
		wantPad int
		wantErr error
	}{
		{0, 0, 255, nil},
		{255, 0, 0, nil},
		{256, 0, 255, nil},
		{511, 0, 0, nil},
		{512, 0, 511, nil},
		{1000, 0, 23, nil},
		{2047, 0, 0, nil},
		{2048, 0, 511, nil},
		{3071, 0, 0, nil},
		{3072, 0, 921, nil}, // the 4096 class does not fit: fill to 4096
		{3993, 0, 0, nil},
		{3994, 0, 0, ErrTooLarge},
		{3072, 8192, 1023, nil},
		{4096, 8192, 1023, nil},
		{0, 300, 197, nil}, // capped by a small maximum
		{200, 300, 0, ErrTooLarge},
		{-1, 0, 0, errors.New("negative")},
	}
	for _, tc := range tests {
		pad, err := BucketPad(tc.n, tc.max)
		switch {
		case tc.wantErr != nil && err == nil:
			t.Errorf("BucketPad(%d, %d) = %d, want an error", tc.n, tc.max, pad)
		case tc.wantErr == ErrTooLarge && !errors.Is(err, ErrTooLarge):
			t.Errorf("BucketPad(%d, %d): err = %v, want ErrTooLarge", tc.n, tc.max, err)
		case tc.wantErr == nil && err != nil:
			t.Errorf("BucketPad(%d, %d): %v", tc.n, tc.max, err)
		case tc.wantErr == nil && pad != tc.wantPad:
			t.Errorf("BucketPad(%d, %d) = %d, want %d", tc.n, tc.max, pad, tc.wantPad)
		}
	}

	// Every plaintext that fits lands on one of a few body sizes, never
	// above the maximum.
	sizes := map[int]int{}
	for n := 0; n <= MaxPlaintext; n++ {
		pad, err := BucketPad(n, MaxBodySize)
		if err != nil {
			t.Fatalf("BucketPad(%d): %v", n, err)
		}
		size := EncryptedSize(n, pad)
		if size > MaxBodySize {
			t.Fatalf("BucketPad(%d) gives a %d-byte body", n, size)
		}
		sizes[size]++
	}
	if len(sizes) != 8 {
		t.Fatalf("got %d distinct body sizes, want 8: %v", len(sizes), sizes)
	}
}

func TestRoundTrip(t *testing.T) {
	k, ua := newSubscription(t)
	sizes := []int{0, 1, 15, 16, 17, 41, 100, 255, 256, 1000, 1024, 3072, MaxPlaintext, 5000, 70000}
	for _, n := range sizes {
		pt := make([]byte, n)
		rand.Read(pt)
		bucket, err := BucketPad(n, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, pad := range []int{0, 1, 7, bucket} {
			body, err := Encrypt(k, pt, pad)
			if err != nil {
				t.Fatalf("Encrypt(%d, pad %d): %v", n, pad, err)
			}
			if len(body) != EncryptedSize(n, pad) {
				t.Fatalf("Encrypt(%d, pad %d): len %d, EncryptedSize %d", n, pad, len(body), EncryptedSize(n, pad))
			}
			rs := binary.BigEndian.Uint32(body[16:20])
			if int(rs) <= len(body)-HeaderLen || (len(body)-HeaderLen < DefaultRecordSize && rs != DefaultRecordSize) {
				t.Fatalf("Encrypt(%d, pad %d): rs %d for a %d-byte record", n, pad, rs, len(body)-HeaderLen)
			}
			if body[20] != 65 {
				t.Fatalf("idlen = %d", body[20])
			}
			if _, err := ParseUAPublic(body[21:HeaderLen]); err != nil {
				t.Fatalf("keyid is not a P-256 point: %v", err)
			}
			got, err := Decrypt(ua, k.AuthSecret, body)
			if err != nil {
				t.Fatalf("Decrypt(%d, pad %d): %v", n, pad, err)
			}
			if !bytes.Equal(got, pt) {
				t.Fatalf("round trip of %d bytes with pad %d differs", n, pad)
			}
		}
	}

	// Fresh salt and ephemeral key per message.
	a, _ := Encrypt(k, []byte("same"), 0)
	b, _ := Encrypt(k, []byte("same"), 0)
	if bytes.Equal(a[:16], b[:16]) || bytes.Equal(a[21:86], b[21:86]) || bytes.Equal(a, b) {
		t.Fatal("two encryptions share a salt or an ephemeral key")
	}
}

func TestEncryptRejects(t *testing.T) {
	k, _ := newSubscription(t)
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	x, _ := ecdh.X25519().GenerateKey(rand.Reader)
	tests := []struct {
		name string
		k    Keys
		pad  int
		salt []byte
		eph  *ecdh.PrivateKey
	}{
		{"no public key", Keys{AuthSecret: k.AuthSecret}, 0, make([]byte, 16), eph},
		{"X25519 public key", Keys{UAPublic: x.PublicKey(), AuthSecret: k.AuthSecret}, 0, make([]byte, 16), eph},
		{"short auth secret", Keys{UAPublic: k.UAPublic, AuthSecret: k.AuthSecret[:15]}, 0, make([]byte, 16), eph},
		{"negative padding", k, -1, make([]byte, 16), eph},
		{"huge padding", k, 1 << 31, make([]byte, 16), eph},
		{"short salt", k, 0, make([]byte, 15), eph},
		{"X25519 ephemeral", k, 0, make([]byte, 16), x},
		{"nil ephemeral", k, 0, make([]byte, 16), nil},
	}
	for _, tc := range tests {
		if _, err := encrypt(tc.k, []byte("x"), tc.pad, tc.eph, tc.salt); err == nil {
			t.Errorf("%s: encrypt succeeded", tc.name)
		}
	}
	if _, err := Encrypt(Keys{}, nil, 0); err == nil {
		t.Error("Encrypt with empty Keys succeeded")
	}
}

// encryptRecords is an RFC 8188 encoder with control over records, to test
// Decrypt on what Encrypt never produces. Record i holds chunks[i] followed
// by delims[i]; every record but the last is zero-padded to exactly rs.
func encryptRecords(t *testing.T, k Keys, chunks [][]byte, delims []byte, rs uint32) []byte {
	t.Helper()
	eph, _ := ecdh.P256().GenerateKey(rand.Reader)
	salt := make([]byte, 16)
	rand.Read(salt)
	secret, _ := eph.ECDH(k.UAPublic)
	aead, base, err := deriveAEAD(secret, k.AuthSecret, k.UAPublic.Bytes(), eph.PublicKey().Bytes(), salt)
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), salt...)
	out = binary.BigEndian.AppendUint32(out, rs)
	out = append(out, 65)
	out = append(out, eph.PublicKey().Bytes()...)
	for i, c := range chunks {
		rec := append(append([]byte(nil), c...), delims[i])
		for i < len(chunks)-1 && len(rec)+TagLen < int(rs) {
			rec = append(rec, 0)
		}
		nonce := append([]byte(nil), base...)
		binary.BigEndian.PutUint64(nonce[4:], binary.BigEndian.Uint64(base[4:])^uint64(i))
		out = aead.Seal(out, nonce, rec, nil)
	}
	return out
}

func TestDecryptMultiRecord(t *testing.T) {
	k, ua := newSubscription(t)
	// rs 40: 23 bytes of data per full record (40 - 16 tag - 1 delimiter).
	c := func(n int) []byte { return bytes.Repeat([]byte{byte(n)}, n) }
	const r, l = delimRecord, delimLast
	body := encryptRecords(t, k, [][]byte{c(23), c(23), c(5)}, []byte{r, r, l}, 40)
	got, err := Decrypt(ua, k.AuthSecret, body)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(append(c(23), c(23)...), c(5)...); !bytes.Equal(got, want) {
		t.Fatalf("multi-record plaintext differs")
	}
	// Dropping the final record leaves a last record with delimiter 0x01.
	if _, err := Decrypt(ua, k.AuthSecret, body[:HeaderLen+80]); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated body: err = %v", err)
	}

	bad := []struct {
		name   string
		chunks [][]byte
		delims []byte
		rs     uint32
	}{
		{"single record with delimiter 0x01", [][]byte{c(3)}, []byte{r}, 4096},
		{"non-final record with delimiter 0x02", [][]byte{c(23), c(1)}, []byte{l, l}, 40},
		{"record without delimiter", [][]byte{c(3)}, []byte{0}, 4096},
		{"unknown delimiter", [][]byte{c(3)}, []byte{3}, 4096},
		{"empty final record", [][]byte{c(23), nil}, []byte{r, 0}, 40},
	}
	for _, tc := range bad {
		body := encryptRecords(t, k, tc.chunks, tc.delims, tc.rs)
		if _, err := Decrypt(ua, k.AuthSecret, body); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	k, ua := newSubscription(t)
	body, err := Encrypt(k, []byte("hello, tamper-evident world"), 10)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ecdh.P256().GenerateKey(rand.Reader)
	flip := func(i int) []byte {
		b := append([]byte(nil), body...)
		b[i] ^= 0x01
		return b
	}
	wrongAuth := append([]byte(nil), k.AuthSecret...)
	wrongAuth[0] ^= 1
	small := append([]byte(nil), body...)
	binary.BigEndian.PutUint32(small[16:], 17)
	idlen := append([]byte(nil), body...)
	idlen[20] = 64

	tests := []struct {
		name     string
		priv     *ecdh.PrivateKey
		auth     []byte
		body     []byte
		wantAuth bool // must be ErrDecrypt
	}{
		{"salt", ua, k.AuthSecret, flip(3), true},
		{"rs", ua, k.AuthSecret, flip(19), true}, // rs 4097: same single record, but see below
		{"keyid", ua, k.AuthSecret, flip(60), false},
		{"ciphertext", ua, k.AuthSecret, flip(HeaderLen + 2), true},
		{"tag", ua, k.AuthSecret, flip(len(body) - 1), true},
		{"truncated tag", ua, k.AuthSecret, body[:len(body)-1], true},
		{"appended byte", ua, k.AuthSecret, append(append([]byte(nil), body...), 0), true},
		{"header only", ua, k.AuthSecret, body[:HeaderLen], false},
		{"short header", ua, k.AuthSecret, body[:40], false},
		{"empty", ua, k.AuthSecret, nil, false},
		{"rs below 18", ua, k.AuthSecret, small, false},
		{"idlen 64", ua, k.AuthSecret, idlen, false},
		{"wrong auth secret", ua, wrongAuth, body, true},
		{"wrong private key", other, k.AuthSecret, body, true},
		{"short auth secret", ua, k.AuthSecret[:8], body, false},
		{"nil private key", nil, k.AuthSecret, body, false},
	}
	for _, tc := range tests {
		_, err := Decrypt(tc.priv, tc.auth, tc.body)
		if tc.name == "rs" {
			// rs is not authenticated by itself: a single record
			// still decrypts under any rs that exceeds it (RFC 8188
			// §2.1 puts rs outside the AEAD). Only check no panic.
			continue
		}
		if err == nil {
			t.Errorf("%s: Decrypt accepted a bad body", tc.name)
			continue
		}
		if tc.wantAuth && !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: err = %v, want ErrDecrypt", tc.name, err)
		}
	}
}

// TestEncryptInPlace: a plaintext written after HeaderLen bytes of room
// is sealed in the buffer's own memory when its capacity holds the body
// (with garbage in the spare capacity, which must become zero padding),
// in a new slice when it does not; both decrypt to the plaintext.
func TestEncryptInPlace(t *testing.T) {
	k, ua := newSubscription(t)
	for _, tc := range []struct {
		n, pad, spare int
		inPlace       bool
	}{
		{0, 0, 0, false},
		{100, 0, 1 + TagLen, true},
		{100, 155, 1 + 155 + TagLen, true},
		{100, 155, 1 + 154 + TagLen, false},
		{MaxPlaintext, 0, 1 + TagLen + 50, true},
	} {
		pt := make([]byte, tc.n)
		rand.Read(pt)
		buf := make([]byte, HeaderLen+tc.n, HeaderLen+tc.n+tc.spare)
		full := buf[:cap(buf)]
		for i := range full {
			full[i] = 0xA5 // garbage everywhere but the plaintext
		}
		copy(buf[HeaderLen:], pt)
		body, err := EncryptInPlace(k, buf, tc.pad)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		if len(body) != EncryptedSize(tc.n, tc.pad) {
			t.Fatalf("%+v: len %d, EncryptedSize %d", tc, len(body), EncryptedSize(tc.n, tc.pad))
		}
		if same := &body[0] == &buf[0]; same != tc.inPlace {
			t.Errorf("%+v: sealed in the caller's buffer = %v, want %v", tc, same, tc.inPlace)
		}
		got, err := Decrypt(ua, k.AuthSecret, body)
		if err != nil {
			t.Fatalf("%+v: Decrypt: %v", tc, err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("%+v: round trip differs", tc)
		}
	}
	if _, err := EncryptInPlace(k, make([]byte, HeaderLen-1), 0); err == nil {
		t.Error("a buffer shorter than the header was accepted")
	}
}
