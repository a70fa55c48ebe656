// Package stanza is the XML element model every part of push2 shares: the
// parser with its limits (a stanza larger or deeper than MaxStanzaBytes,
// MaxDepth or MaxElements is refused before anything reads it), the
// deterministic serialization the 4096-byte notification limit of push2.md
// "Push service interactions" is measured against, the conversion from and
// to XMPP token streams, the namespace table (each namespace written once
// for the whole repository) and stanza errors (Error, with mellium's typed
// ErrorType and Condition).
package stanza

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Element is a parsed XML element with resolved namespaces. It is the one
// stanza representation the pipeline, the built-in profiles and the
// WebAssembly host share: the host parses a stanza once and every profile
// reads the same tree.
//
// An Element handed to a profile is shared and must be treated as read-only;
// a profile that wants to change a tree must Clone it first.
type Element struct {
	Name     xml.Name // Name.Space is the resolved namespace URI
	Attr     []xml.Attr
	Children []*Element
	// Text is the concatenated character data directly inside this element
	// (not of its children). Mixed content order is not preserved, which is
	// fine for stanzas: XMPP payloads do not use mixed content.
	Text string
}

// Parse limits. A stanza larger or deeper than this is refused before any
// profile sees it, so hostile input cannot make the pipeline allocate without
// bound.
const (
	MaxStanzaBytes = 256 << 10
	MaxDepth       = 64
	MaxElements    = 4096
)

// ErrTooLarge is returned by Parse for input beyond the parse limits.
var ErrTooLarge = errors.New("xml: stanza exceeds the size, depth or element limits")

// Parse reads exactly one XML element from b. Leading and trailing
// whitespace is allowed; anything else around the element is an error.
func Parse(b []byte) (*Element, error) {
	if len(b) > MaxStanzaBytes {
		return nil, ErrTooLarge
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	// Namespaces are resolved here from raw tokens rather than by
	// encoding/xml, which leaves an undeclared prefix in Name.Space: a
	// stanza with an undeclared prefix is malformed and refused.
	var (
		root  *Element
		stack []*Element
		scope []map[string]string // prefix ("" = default) → URI, innermost last
		count int
	)
	lookup := func(prefix string) (string, bool) {
		if prefix == "xml" {
			return NSXML, true
		}
		for i := len(scope) - 1; i >= 0; i-- {
			if u, ok := scope[i][prefix]; ok {
				return u, true
			}
		}
		return "", prefix == ""
	}
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if root != nil && len(stack) == 0 {
				return nil, errors.New("xml: more than one root element")
			}
			count++
			if count > MaxElements || len(stack) >= MaxDepth {
				return nil, ErrTooLarge
			}
			decl := map[string]string{}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					decl[""] = a.Value
				case a.Name.Space == "xmlns":
					if a.Value == "" {
						return nil, errors.New("xml: a namespace prefix cannot be undeclared")
					}
					decl[a.Name.Local] = a.Value
				}
			}
			scope = append(scope, decl)
			if !validName(t.Name.Local) || (t.Name.Space != "" && !validName(t.Name.Space)) {
				return nil, fmt.Errorf("xml: invalid element name %q", t.Name.Local)
			}
			ns, ok := lookup(t.Name.Space)
			if !ok {
				return nil, fmt.Errorf("xml: undeclared namespace prefix %q", t.Name.Space)
			}
			el := &Element{Name: xml.Name{Space: ns, Local: t.Name.Local}}
			for _, a := range t.Attr {
				if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
					continue // namespace declarations are regenerated on output
				}
				if !validName(a.Name.Local) {
					return nil, fmt.Errorf("xml: invalid attribute name %q", a.Name.Local)
				}
				if a.Name.Space != "" {
					u, ok := lookup(a.Name.Space)
					if !ok || a.Name.Space == "" {
						return nil, fmt.Errorf("xml: undeclared namespace prefix %q", a.Name.Space)
					}
					a.Name.Space = u
				}
				for _, prev := range el.Attr {
					if prev.Name == a.Name {
						return nil, fmt.Errorf("xml: duplicate attribute %q", a.Name.Local)
					}
				}
				el.Attr = append(el.Attr, a)
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, el)
			} else {
				root = el
			}
			stack = append(stack, el)
		case xml.EndElement:
			// RawToken does not check nesting; do it here.
			if len(stack) == 0 {
				return nil, errors.New("xml: unexpected end element")
			}
			top := stack[len(stack)-1]
			ns, _ := lookup(t.Name.Space)
			if top.Name.Local != t.Name.Local || top.Name.Space != ns {
				return nil, fmt.Errorf("xml: element <%s> closed by </%s>", top.Name.Local, t.Name.Local)
			}
			stack = stack[:len(stack)-1]
			scope = scope[:len(scope)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, errors.New("xml: text outside the root element")
				}
				continue
			}
			stack[len(stack)-1].Text += string(t)
		case xml.Directive:
			return nil, errors.New("xml: directives (DOCTYPE) are not allowed in stanzas")
		case xml.ProcInst:
			if len(stack) != 0 || root != nil || t.Target != "xml" {
				return nil, errors.New("xml: processing instructions are not allowed in stanzas")
			}
		}
	}
	if len(stack) != 0 {
		return nil, errors.New("xml: unexpected end of input")
	}
	if root == nil {
		return nil, errors.New("xml: no element")
	}
	return root, nil
}

// validName checks the first character of an XML name (the decoder checks
// the rest); a prefix split off a name like "a:0" can leave an invalid one.
func validName(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return s != "" && (unicode.IsLetter(r) || r == '_')
}

// MustParse is Parse for trusted literals in tests and examples; it panics on error.
func MustParse(s string) *Element {
	e, err := Parse([]byte(s))
	if err != nil {
		panic(err)
	}
	return e
}

// NewElement returns an element in namespace ns with the given attribute
// pairs (name, value, name, value…).
func NewElement(ns, local string, attrs ...string) *Element {
	e := &Element{Name: xml.Name{Space: ns, Local: local}}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: attrs[i]}, Value: attrs[i+1]})
	}
	return e
}

// Is reports whether e is the element {ns}local.
func (e *Element) Is(ns, local string) bool {
	return e != nil && e.Name.Space == ns && e.Name.Local == local
}

// AttrValue returns the value of the un-namespaced attribute name, or "".
func (e *Element) AttrValue(name string) string {
	v, _ := e.LookupAttr(name)
	return v
}

// LookupAttr returns the value of the un-namespaced attribute name and
// whether it is present.
func (e *Element) LookupAttr(name string) (string, bool) {
	if e == nil {
		return "", false
	}
	for _, a := range e.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// SetAttr sets (or adds) the un-namespaced attribute name.
func (e *Element) SetAttr(name, value string) {
	for i, a := range e.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			e.Attr[i].Value = value
			return
		}
	}
	e.Attr = append(e.Attr, xml.Attr{Name: xml.Name{Local: name}, Value: value})
}

// Child returns the first child {ns}local, or nil. An empty ns matches any
// namespace.
func (e *Element) Child(ns, local string) *Element {
	if e == nil {
		return nil
	}
	for _, c := range e.Children {
		if c.Name.Local == local && (ns == "" || c.Name.Space == ns) {
			return c
		}
	}
	return nil
}

// ChildrenNamed returns every child {ns}local.
func (e *Element) ChildrenNamed(ns, local string) []*Element {
	if e == nil {
		return nil
	}
	var out []*Element
	for _, c := range e.Children {
		if c.Name.Local == local && (ns == "" || c.Name.Space == ns) {
			out = append(out, c)
		}
	}
	return out
}

// ChildText returns the text of the first child {ns}local, or "".
func (e *Element) ChildText(ns, local string) string {
	if c := e.Child(ns, local); c != nil {
		return c.Text
	}
	return ""
}

// Append adds children and returns e.
func (e *Element) Append(children ...*Element) *Element {
	e.Children = append(e.Children, children...)
	return e
}

// WithText sets the text and returns e.
func (e *Element) WithText(s string) *Element {
	e.Text = s
	return e
}

// Clone returns a deep copy of e.
func (e *Element) Clone() *Element {
	if e == nil {
		return nil
	}
	c := &Element{Name: e.Name, Text: e.Text}
	if len(e.Attr) > 0 {
		c.Attr = append([]xml.Attr(nil), e.Attr...)
	}
	if len(e.Children) > 0 {
		c.Children = make([]*Element, len(e.Children))
		for i, ch := range e.Children {
			c.Children[i] = ch.Clone()
		}
	}
	return c
}

// String returns the serialized element (see Marshal).
func (e *Element) String() string {
	return string(e.Marshal())
}

// Marshal serializes e. Namespace declarations are written where an
// element's namespace differs from its parent's, with the root always
// declaring its own. The output is deterministic, so its length is what the
// 4096-byte notification limit is measured against.
func (e *Element) Marshal() []byte {
	var b bytes.Buffer
	e.write(&b, "\x00")
	return b.Bytes()
}

// MarshalIn serializes e as a child of an element in namespace parentNS,
// omitting the xmlns declaration when it is inherited (as in a stanza inside
// a jabber:client or jabber:component:accept stream).
func (e *Element) MarshalIn(parentNS string) []byte {
	var b bytes.Buffer
	e.write(&b, parentNS)
	return b.Bytes()
}

// Size returns len(e.Marshal()) without keeping the bytes.
func (e *Element) Size() int {
	var c countWriter
	e.write(&c, "\x00")
	return int(c)
}

type countWriter int

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }
func (c *countWriter) WriteString(s string) (int, error) {
	*c += countWriter(len(s))
	return len(s), nil
}
func (c *countWriter) WriteByte(byte) error { *c++; return nil }

type writer interface {
	io.Writer
	io.StringWriter
	io.ByteWriter
}

func (e *Element) write(w writer, parentNS string) {
	w.WriteByte('<')
	w.WriteString(e.Name.Local)
	if e.Name.Space != parentNS {
		w.WriteString(` xmlns="`)
		escapeAttr(w, e.Name.Space)
		w.WriteByte('"')
	}
	for i, a := range e.Attr {
		w.WriteByte(' ')
		switch a.Name.Space {
		case "":
			w.WriteString(a.Name.Local)
		case NSXML:
			w.WriteString("xml:")
			w.WriteString(a.Name.Local)
		default:
			// Foreign-namespaced attributes are rare in stanzas; give each a
			// local prefix declared on the element itself.
			fmt.Fprintf(w, `xmlns:a%d="`, i)
			escapeAttr(w, a.Name.Space)
			fmt.Fprintf(w, `" a%d:%s`, i, a.Name.Local)
		}
		w.WriteString(`="`)
		escapeAttr(w, a.Value)
		w.WriteByte('"')
	}
	if len(e.Children) == 0 && e.Text == "" {
		w.WriteString("/>")
		return
	}
	w.WriteByte('>')
	escapeText(w, e.Text)
	for _, c := range e.Children {
		c.write(w, e.Name.Space)
	}
	w.WriteString("</")
	w.WriteString(e.Name.Local)
	w.WriteByte('>')
}

var (
	textEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "\r", "&#xD;")
	attrEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "\r", "&#xD;", "\n", "&#xA;", "\t", "&#x9;")
)

func escapeText(w writer, s string) { textEscaper.WriteString(w, s) }
func escapeAttr(w writer, s string) { attrEscaper.WriteString(w, s) }
