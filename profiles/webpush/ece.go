package webpush

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes of the aes128gcm content coding as used by Web Push.
const (
	// SaltLen is the length of the random salt at the start of the RFC 8188
	// §2.1 header.
	SaltLen = 16

	// HeaderLen is the length of the RFC 8188 §2.1 header that Web Push
	// produces: salt (16) || rs (4) || idlen (1) || keyid (65), where keyid
	// is the application server's ephemeral public key (RFC 8291 §4).
	HeaderLen = SaltLen + 4 + 1 + UAPublicLen

	// TagLen is the AEAD_AES_128_GCM authentication tag appended to every
	// record (RFC 8188 §2, RFC 5116 §5.1).
	TagLen = 16

	// Overhead is what encryption adds to plaintext and padding: the
	// header, the one-octet padding delimiter and the tag.
	Overhead = HeaderLen + 1 + TagLen

	// DefaultRecordSize is the rs value written in the header. RFC 8291 §4
	// requires rs to exceed the length of the single record; 4096 does so
	// for every body up to MaxBodySize and is what RFC 8291 Appendix A uses.
	DefaultRecordSize = 4096

	// MaxBodySize is the largest encrypted body a push service is required
	// to accept (RFC 8291 §4). Encrypt does not enforce it;
	// BucketPad and callers that care about delivery do.
	MaxBodySize = 4096

	// MaxPlaintext is the largest plaintext that fits in MaxBodySize with
	// no padding: 4096 - 86 - 1 - 16 = 3993 octets (RFC 8291 §4).
	MaxPlaintext = MaxBodySize - Overhead

	// maxRecord bounds a single record so that rs = record+1 fits in the
	// 32-bit header field and EncryptedSize cannot overflow an int.
	maxRecord = 1 << 30

	keyLen   = 16 // AEAD_AES_128_GCM key (RFC 8188 §2.2)
	nonceLen = 12 // AEAD_AES_128_GCM nonce (RFC 8188 §2.3)
)

// Delimiters that end the data of a record (RFC 8188 §2).
const (
	delimRecord = 0x01 // every record but the last
	delimLast   = 0x02 // the last record
)

var (
	// ErrDecrypt is returned by Decrypt when a record fails AEAD
	// authentication: the wrong private key or authentication secret, or
	// a modified body. Deliberately unspecific (RFC 8188 §4).
	ErrDecrypt = errors.New("webpush: the message could not be decrypted: wrong key or authentication secret, or the body was modified")

	// ErrTooLarge is returned when a plaintext cannot fit in the size
	// limit a caller asked for.
	ErrTooLarge = errors.New("webpush: the plaintext is too large for the maximum body size")
)

// EncryptedSize returns the exact length of the body that Encrypt produces
// for a plaintext of plaintextLen octets and padLen octets of padding:
// HeaderLen (86) + plaintextLen + 1 (delimiter) + padLen + TagLen (16).
func EncryptedSize(plaintextLen, padLen int) int {
	return plaintextLen + padLen + Overhead
}

// BucketPad returns the padding length that makes a plaintext of
// plaintextLen octets encrypt to a body whose size depends only on a coarse
// size class, so that the body length leaks little about the plaintext
// length (RFC 8291 §4, RFC 8188 §4 on traffic analysis).
//
// The classes are sizes of the padded record plaintext (data, delimiter and
// padding): 256, 512, then every multiple of 512 up to 3072, then every
// multiple of 1024. The resulting body is the class plus 102 octets
// (header and tag). When the class would make the body larger than maxBody,
// the padding instead fills the body to exactly maxBody, itself a fixed size;
// the result never exceeds maxBody. maxBody <= 0 means MaxBodySize.
//
// BucketPad returns ErrTooLarge if even unpadded the body would exceed
// maxBody, and an error for a negative plaintextLen.
func BucketPad(plaintextLen, maxBody int) (int, error) {
	if plaintextLen < 0 {
		return 0, errors.New("webpush: the plaintext length is negative")
	}
	if maxBody <= 0 {
		maxBody = MaxBodySize
	}
	if plaintextLen > maxRecord || EncryptedSize(plaintextLen, 0) > maxBody {
		return 0, ErrTooLarge
	}
	need := plaintextLen + 1 // data and delimiter
	var class int
	switch {
	case need <= 256:
		class = 256
	case need <= 3072:
		class = (need + 511) / 512 * 512
	default:
		class = (need + 1023) / 1024 * 1024
	}
	if class+HeaderLen+TagLen > maxBody {
		class = maxBody - HeaderLen - TagLen
	}
	return class - need, nil
}

// Encrypt encrypts plaintext for the subscription k as one Web Push message
// (RFC 8291 §3.4, §4) in the aes128gcm content coding (RFC 8188 §2), with
// padLen zero octets of padding after the delimiter (see BucketPad).
//
// Each call generates a fresh ephemeral P-256 key pair and a fresh random
// salt (RFC 8291 §3.1, RFC 8188 §2.1); the ephemeral private key is dropped
// when Encrypt returns. The result is a new slice of exactly
// EncryptedSize(len(plaintext), padLen) octets: the header, whose keyid is
// the ephemeral public key, followed by a single record. Encrypt only reads
// plaintext and k; it retains neither.
//
// Encrypt does not enforce MaxBodySize, so that callers may target push
// services that accept more; it does reject padLen < 0 and records beyond
// 1 GiB.
func Encrypt(k Keys, plaintext []byte, padLen int) ([]byte, error) {
	if len(plaintext) > maxRecord {
		return nil, errors.New("webpush: the message is too large for a single record")
	}
	buf := make([]byte, HeaderLen+len(plaintext), HeaderLen+len(plaintext)+1+max(padLen, 0)+TagLen)
	copy(buf[HeaderLen:], plaintext)
	return EncryptInPlace(k, buf, padLen)
}

// EncryptInPlace is Encrypt for a plaintext the caller has already written
// into buf after HeaderLen bytes of room (buf[HeaderLen:] is the
// plaintext; the first HeaderLen bytes are overwritten with the header). The
// body is built in buf's memory when its capacity is at least
// EncryptedSize(len(buf)-HeaderLen, padLen), else in a new slice: a caller
// that serializes its plaintext straight into such a buffer encrypts with
// no copy and one allocation in all. The plaintext is overwritten either way.
func EncryptInPlace(k Keys, buf []byte, padLen int) ([]byte, error) {
	if len(buf) < HeaderLen {
		return nil, fmt.Errorf("webpush: the buffer has no room for the %d-byte header", HeaderLen)
	}
	eph, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("webpush: generating the ephemeral key failed: %w", err)
	}
	var salt [SaltLen]byte
	rand.Read(salt[:]) // never fails (crypto/rand, Go 1.24+)
	return seal(k, buf, padLen, eph, salt[:])
}

// encrypt is Encrypt with the ephemeral key and salt supplied by the caller.
// It exists so that tests can reproduce RFC 8291 Appendix A byte for byte;
// production code must use Encrypt, since reusing eph or salt across
// messages breaks the security argument of RFC 8188 §4.
func encrypt(k Keys, plaintext []byte, padLen int, eph *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	if len(plaintext) > maxRecord {
		return nil, errors.New("webpush: the message is too large for a single record")
	}
	buf := make([]byte, HeaderLen+len(plaintext))
	copy(buf[HeaderLen:], plaintext)
	return seal(k, buf, padLen, eph, salt)
}

// seal encrypts buf[HeaderLen:] in place (see EncryptInPlace) with the
// given ephemeral key and salt.
func seal(k Keys, buf []byte, padLen int, eph *ecdh.PrivateKey, salt []byte) ([]byte, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	if padLen < 0 {
		return nil, errors.New("webpush: the padding length is negative")
	}
	if len(salt) != SaltLen {
		return nil, fmt.Errorf("webpush: the salt must be %d bytes", SaltLen)
	}
	if eph == nil || eph.Curve() != ecdh.P256() {
		return nil, errors.New("webpush: the ephemeral key must be a P-256 key")
	}
	plainLen := len(buf) - HeaderLen
	if plainLen > maxRecord || padLen > maxRecord-plainLen-1-TagLen {
		return nil, errors.New("webpush: the message is too large for a single record")
	}
	recordLen := plainLen + 1 + padLen + TagLen
	rs := uint32(DefaultRecordSize)
	if recordLen >= DefaultRecordSize {
		// RFC 8291 §4: rs must be greater than the record.
		rs = uint32(recordLen + 1)
	}

	secret, err := eph.ECDH(k.UAPublic)
	if err != nil {
		return nil, errors.New("webpush: ECDH with the user agent public key failed")
	}
	asPublic := eph.PublicKey().Bytes()
	aead, nonce, err := deriveAEAD(secret, k.AuthSecret, k.UAPublic.Bytes(), asPublic, salt)
	if err != nil {
		return nil, err
	}

	// The whole body lives in one slice; the record is sealed in place.
	out := buf
	if cap(out) < HeaderLen+recordLen {
		out = make([]byte, HeaderLen+recordLen)
		copy(out[HeaderLen:], buf[HeaderLen:])
	} else {
		out = out[:HeaderLen+recordLen]
		clear(out[HeaderLen+plainLen:]) // the delimiter and zero padding
	}
	copy(out, salt)
	binary.BigEndian.PutUint32(out[SaltLen:], rs)
	out[SaltLen+4] = UAPublicLen
	copy(out[SaltLen+5:HeaderLen], asPublic)
	rec := out[HeaderLen : HeaderLen+recordLen-TagLen]
	rec[plainLen] = delimLast // the rest is zero padding
	aead.Seal(rec[:0], nonce, rec, nil)
	return out, nil
}

// deriveAEAD performs the key derivation of RFC 8291 §3.3 and §3.4 followed
// by that of RFC 8188 §2.2 and §2.3, and returns the record cipher and the
// base nonce (the nonce of record 0).
//
//	IKM   = HKDF(salt=auth_secret, ikm=ecdh_secret,
//	             info="WebPush: info" || 0x00 || ua_public || as_public, L=32)
//	PRK   = HKDF-Extract(salt, IKM)
//	CEK   = HKDF-Expand(PRK, "Content-Encoding: aes128gcm" || 0x00, 16)
//	NONCE = HKDF-Expand(PRK, "Content-Encoding: nonce" || 0x00, 12)
//
// The inputs are only read; the derived secrets live in the returned values.
func deriveAEAD(ecdhSecret, authSecret, uaPublic, asPublic, salt []byte) (cipher.AEAD, []byte, error) {
	keyInfo := make([]byte, 0, 14+2*UAPublicLen)
	keyInfo = append(keyInfo, "WebPush: info\x00"...)
	keyInfo = append(keyInfo, uaPublic...)
	keyInfo = append(keyInfo, asPublic...)
	ikm, err := hkdf.Key(sha256.New, ecdhSecret, authSecret, string(keyInfo), sha256.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: key derivation failed: %w", err)
	}
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: key derivation failed: %w", err)
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", keyLen)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: key derivation failed: %w", err)
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", nonceLen)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: key derivation failed: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: AES setup failed: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("webpush: AES-GCM setup failed: %w", err)
	}
	return aead, nonce, nil
}

// Decrypt is the user agent's side of RFC 8291: it parses the RFC 8188 §2.1
// header of body, derives the keys from uaPrivate, the sender key carried in
// keyid and authSecret (RFC 8291 §3.4), decrypts every record and removes
// the padding and delimiters (RFC 8188 §2).
//
// Although RFC 8291 §4 has application servers send a single record, Decrypt
// accepts any number, checking that every record but the last is exactly rs
// octets and ends its data with the 0x01 delimiter and that the last one
// uses 0x02, so truncated bodies are rejected (RFC 8188 §2). The keyid must be
// a 65-octet uncompressed P-256 point (RFC 8291 §4).
//
// body is only read. The result is a new slice owned by the caller. Failure
// to authenticate is ErrDecrypt; malformed headers get a descriptive error.
func Decrypt(uaPrivate *ecdh.PrivateKey, authSecret []byte, body []byte) ([]byte, error) {
	if uaPrivate == nil || uaPrivate.Curve() != ecdh.P256() {
		return nil, errors.New("webpush: the user agent private key must be a P-256 key")
	}
	if err := ParseAuthSecret(authSecret); err != nil {
		return nil, err
	}
	if len(body) < SaltLen+5 {
		return nil, errors.New("webpush: the body is shorter than the aes128gcm header (RFC 8188 §2.1)")
	}
	salt := body[:SaltLen]
	rs := binary.BigEndian.Uint32(body[SaltLen:])
	idlen := int(body[SaltLen+4])
	if rs < TagLen+2 {
		return nil, fmt.Errorf("webpush: the record size %d is below the minimum of %d (RFC 8188 §2.1)", rs, TagLen+2)
	}
	if idlen != UAPublicLen {
		return nil, fmt.Errorf("webpush: the header keyid is %d bytes, but must be the %d-byte sender public key (RFC 8291 §4)", idlen, UAPublicLen)
	}
	if len(body) < HeaderLen {
		return nil, errors.New("webpush: the body ends inside the aes128gcm header (RFC 8188 §2.1)")
	}
	asPublicRaw := body[SaltLen+5 : HeaderLen]
	asPublic, err := ParseUAPublic(asPublicRaw)
	if err != nil {
		return nil, errors.New("webpush: the sender public key in the header is not an uncompressed P-256 point (RFC 8291 §4)")
	}
	secret, err := uaPrivate.ECDH(asPublic)
	if err != nil {
		return nil, errors.New("webpush: ECDH with the sender public key failed")
	}
	aead, base, err := deriveAEAD(secret, authSecret, uaPrivate.PublicKey().Bytes(), asPublicRaw, salt)
	if err != nil {
		return nil, err
	}

	ct := body[HeaderLen:]
	if len(ct) == 0 {
		return nil, errors.New("webpush: the body has a header but no record (RFC 8188 §2)")
	}
	out := make([]byte, 0, len(ct))
	nonce := make([]byte, nonceLen)
	for seq := uint64(0); len(ct) > 0; seq++ {
		n := len(ct)
		if uint64(n) > uint64(rs) {
			n = int(rs)
		}
		rec := ct[:n]
		ct = ct[n:]
		last := len(ct) == 0
		if len(rec) < TagLen+1 {
			return nil, fmt.Errorf("webpush: record %d is too short to hold a delimiter and a tag (RFC 8188 §2)", seq)
		}
		// RFC 8188 §2.3: the nonce is the base nonce XOR the sequence
		// number, as a 96-bit big-endian integer.
		copy(nonce, base)
		binary.BigEndian.PutUint64(nonce[4:], binary.BigEndian.Uint64(base[4:])^seq)
		start := len(out)
		out, err = aead.Open(out, nonce, rec, nil)
		if err != nil {
			return nil, ErrDecrypt
		}
		// Strip padding: zeros back to the delimiter.
		i := len(out) - 1
		for i >= start && out[i] == 0 {
			i--
		}
		if i < start {
			return nil, fmt.Errorf("webpush: record %d has no padding delimiter (RFC 8188 §2)", seq)
		}
		switch {
		case last && out[i] != delimLast:
			return nil, errors.New("webpush: the last record does not end with the 0x02 delimiter; the body may be truncated (RFC 8188 §2)")
		case !last && out[i] != delimRecord:
			return nil, fmt.Errorf("webpush: record %d is not the last record but does not use the 0x01 delimiter (RFC 8188 §2)", seq)
		}
		out = out[:i]
	}
	return out, nil
}
