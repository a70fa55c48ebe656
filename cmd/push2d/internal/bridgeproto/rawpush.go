package bridgeproto

import (
	"bytes"
	"context"
	"encoding/xml"
	"strings"
	"unicode/utf8"

	"github.com/push2/push2/engine/stanza"
)

// RawSender is a Sender that can also write a stanza already serialized
// for the component stream (in the stream's default namespace, as the
// Sender's token streams are written). Deliver uses it when the Sender has
// it: the notification is stored serialized, and building it back into a
// tree (stanza.Parse) only to have an XML encoder write it token by token
// was a fifth of push2d's CPU per pushed message through Prosody (issue 12
// goal 2). SendRaw must write b whole, between two stanzas of the others.
type RawSender interface {
	Sender
	SendRaw(ctx context.Context, b []byte) error
}

// pushBytes is Message(from, to, Push{account, reg, notification}) as the
// component stream carries it: <message/> without a namespace (the
// stream's), <push/> in NS, and the stored notification inside it as it is.
// notification must be a well-formed element that declares its own
// namespace (simpleElement).
func pushBytes(from, to, account, reg, notification string) []byte {
	var b bytes.Buffer
	b.Grow(len(notification) + len(from) + len(to) + len(account) + len(reg) + 160)
	b.WriteString(`<message from="`)
	xml.EscapeText(&b, []byte(from))
	b.WriteString(`" to="`)
	xml.EscapeText(&b, []byte(to))
	b.WriteString(`" id="`)
	b.WriteString(NewID())
	b.WriteString(`"><` + KindPush + ` xmlns="` + NS + `" account="`)
	xml.EscapeText(&b, []byte(account))
	b.WriteString(`" registration="`)
	xml.EscapeText(&b, []byte(reg))
	b.WriteString(`">`)
	b.WriteString(notification)
	b.WriteString(`</` + KindPush + `></message>`)
	return b.Bytes()
}

// storedNotificationPrefix is how every notification the engine stores
// begins (stanza.Element.Marshal of a <message/> in jabber:client: the root
// always declares its namespace).
const storedNotificationPrefix = `<message xmlns="` + stanza.NSClient + `"`

// simpleElement reports whether s is one XML element, well-formed, in the
// subset stanza.Element.Marshal writes: ASCII names without prefixes (but
// xml:), attributes in double quotes, no comments, CDATA, processing
// instructions or DOCTYPE, only the entities Marshal writes, valid UTF-8
// XML characters. It answers false for anything else, well-formed or not
// (the caller then parses s fully), so that a stored notification written
// raw into the component stream can never break the stream. Linear in
// len(s), no allocation for stanzas up to 16 levels deep.
func simpleElement(s string) bool {
	var buf [16]string
	stack := buf[:0]
	i := 0
	if len(s) == 0 || s[0] != '<' {
		return false
	}
	for i < len(s) {
		switch c := s[i]; {
		case c == '<' && i+1 < len(s) && s[i+1] == '/':
			j := scanName(s, i+2)
			if j == i+2 || j >= len(s) || s[j] != '>' || len(stack) == 0 || stack[len(stack)-1] != s[i+2:j] {
				return false
			}
			stack = stack[:len(stack)-1]
			i = j + 1
			if len(stack) == 0 {
				return i == len(s)
			}
		case c == '<':
			j := scanName(s, i+1)
			if j == i+1 || j >= len(s) {
				return false
			}
			stack = append(stack, s[i+1:j])
			var attrs [16]string
			n := 0
			for j < len(s) && s[j] == ' ' {
				k := j + 1
				name := ""
				if strings.HasPrefix(s[k:], "xml:") {
					k += len("xml:")
				}
				e := scanName(s, k)
				if e == k || n == len(attrs) {
					return false
				}
				name = s[j+1 : e]
				for _, a := range attrs[:n] {
					if a == name {
						return false // a duplicate attribute
					}
				}
				attrs[n] = name
				n++
				if !strings.HasPrefix(s[e:], `="`) {
					return false
				}
				end, ok := scanChars(s, e+2, '"')
				if !ok {
					return false
				}
				j = end + 1
			}
			switch {
			case strings.HasPrefix(s[j:], "/>"):
				stack = stack[:len(stack)-1]
				i = j + 2
				if len(stack) == 0 {
					return i == len(s)
				}
			case j < len(s) && s[j] == '>':
				i = j + 1
			default:
				return false
			}
		default:
			if len(stack) == 0 {
				return false
			}
			end, ok := scanChars(s, i, '<')
			if !ok {
				return false
			}
			i = end
		}
	}
	return false // ended inside an element
}

// scanName returns the end of the name starting at s[i] (i if there is
// none): an ASCII letter or _, then letters, digits, -, _ and '.'.
func scanName(s string, i int) int {
	j := i
	for j < len(s) {
		c := s[j]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || j > i && (c >= '0' && c <= '9' || c == '-' || c == '.') {
			j++
			continue
		}
		break
	}
	return j
}

// scanChars returns the index of the first stop byte at or after s[i],
// checking that what comes before it is character data: valid UTF-8 XML
// characters, no < or >, no & but the entities Marshal writes. ok is false
// if s ends first or a byte does not pass.
func scanChars(s string, i int, stop byte) (end int, ok bool) {
	for i < len(s) {
		c := s[i]
		switch {
		case c == stop:
			return i, true
		case c == '<' || c == '>':
			return 0, false
		case c == '&':
			n := entityLen(s[i:])
			if n == 0 {
				return 0, false
			}
			i += n
		case c < 0x20:
			if c != '\t' && c != '\n' && c != '\r' {
				return 0, false
			}
			i++
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError || r == 0xFFFE || r == 0xFFFF {
				return 0, false
			}
			i += size
		}
	}
	return 0, false
}

// entityLen is the length of the entity s starts with, if it is one that
// stanza.Element.Marshal writes (or a predefined one); 0 otherwise.
func entityLen(s string) int {
	for _, e := range [...]string{"&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#xD;", "&#xA;", "&#x9;"} {
		if strings.HasPrefix(s, e) {
			return len(e)
		}
	}
	return 0
}
