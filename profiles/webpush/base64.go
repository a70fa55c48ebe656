package webpush

import (
	"encoding/base64"
	"errors"
)

// ErrBase64 is returned for every malformed base64 input. It never says which
// byte was wrong: the input may be a key, and a position plus the surrounding
// alphabet is enough to leak part of it into a log.
var ErrBase64 = errors.New("webpush: the value is not valid base64 (standard or URL-safe alphabet, padded or unpadded)")

// DecodeBase64 decodes s in any of the four common base64 forms: the standard
// and URL-safe alphabets of RFC 4648 §4 and §5, each with or without
// trailing '=' padding. ASCII whitespace (space, tab, CR, LF, FF, VT) is
// ignored anywhere, so PEM bodies split across lines decode as one value.
//
// Padding, when present, must be complete and only at the end: "QQ==" and
// "QQ" are accepted, "QQ=" and "Q=Q=" are not. Mixing the two alphabets in one
// value is tolerated. The returned slice is freshly allocated and owned by the
// caller. The error never echoes any part of s.
func DecodeBase64(s string) ([]byte, error) {
	// Normalise into the standard alphabet with whitespace and padding
	// removed; the buffer is at most len(s) long.
	buf := make([]byte, 0, len(s))
	pad := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			continue
		case c == '=':
			pad++
			continue
		case pad > 0:
			// Data after padding.
			return nil, ErrBase64
		case c == '-':
			c = '+'
		case c == '_':
			c = '/'
		}
		buf = append(buf, c)
	}
	if pad > 2 || (pad > 0 && (len(buf)+pad)%4 != 0) {
		return nil, ErrBase64
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(buf)))
	n, err := base64.RawStdEncoding.Decode(out, buf)
	if err != nil {
		return nil, ErrBase64
	}
	return out[:n], nil
}

// EncodeBase64URL encodes b in the unpadded URL-safe alphabet (RFC 4648 §5),
// the form RFC 8291 §3.2 and RFC 8292 §3.2 use for keys.
func EncodeBase64URL(b []byte) string {
	return base64.RawURLEncoding.EncodeToString(b)
}
