package pebblestore

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/push2/push2/engine"
)

// marshalOutbox is marshal(e), byte for byte (the stored format is
// unchanged, and read with encoding/json as before), without reflection:
// an outbox entry is written twice per push (recorded, then sent), and
// encoding/json's reflection and buffers were ~4% of push2d's CPU per
// pushed message on a burst through Prosody (issue 12 goal 2).
// TestMarshalOutboxIsEncodingJSON holds it to encoding/json's output.
func marshalOutbox(e engine.OutboxEntry) ([]byte, error) {
	b := make([]byte, 0, 160+len(e.ID)+len(e.Account)+len(e.Reg)+len(e.To)+len(e.Stanza)*11/10+len(e.LastErr))
	b = append(b, `{"id":`...)
	b = appendJSONString(b, e.ID)
	b = append(b, `,"account":`...)
	b = appendJSONString(b, e.Account)
	b = append(b, `,"registration":`...)
	b = appendJSONString(b, e.Reg)
	b = append(b, `,"to":`...)
	b = appendJSONString(b, e.To)
	b = append(b, `,"stanza":`...)
	b = appendJSONString(b, e.Stanza)
	b = append(b, `,"created":`...)
	b, ok := appendJSONTime(b, e.Created)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"due":`...)
	b, ok2 := appendJSONTime(b, e.Due)
	ok = ok && ok2
	if !e.SentAt.IsZero() {
		b = append(b, `,"sent":`...)
		b, ok2 = appendJSONTime(b, e.SentAt)
		ok = ok && ok2
	}
	if e.LastErr != "" {
		b = append(b, `,"last_error":`...)
		b = appendJSONString(b, e.LastErr)
	}
	if !ok {
		// A time encoding/json refuses (a year outside 0–9999): its error.
		return marshal(e)
	}
	return append(b, '}'), nil
}

// appendJSONTime appends t as encoding/json does (time.Time's
// MarshalJSON: RFC 3339 with nanoseconds, quoted); false if t has no such
// form.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	return append(b, '"'), err == nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json does without HTML
// escaping: \" and \\, the short escapes for \b \f \n \r \t, \u00XX for
// the other control characters, \ufffd for each invalid UTF-8 byte, and
// \u2028 and \u2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
