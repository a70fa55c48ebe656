// Package stanza is the XML element model every part of push2 shares: the
// parser with its limits (a stanza beyond MaxStanzaBytes, MaxDepth,
// MaxElements, MaxElementAttrs, MaxAttrs or MaxNameBytes is refused before
// anything reads it, at a cost linear in its size), the
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
	"strconv"
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

// Parse limits. A stanza beyond any of them is refused before any profile
// sees it, so hostile input can make the pipeline neither allocate without
// bound nor spend more than a small, linear amount of CPU on it: every check
// below is linear in the stanza's size (duplicate attributes are found with
// a map, not by comparing every pair; text split by comments or CDATA
// sections is joined once). docs/engine.md "Parsing limits" lists them for
// operators; BenchmarkWorstStanza (package engine) measures the most
// expensive stanza they let through.
const (
	MaxStanzaBytes = 256 << 10 // serialized bytes
	MaxDepth       = 64        // nesting of elements, the root being 1
	MaxElements    = 4096      // elements in the stanza, the root included
	// MaxElementAttrs bounds the attributes of one element (namespace
	// declarations included); real stanzas have a handful.
	MaxElementAttrs = 256
	// MaxAttrs bounds the attributes of the whole stanza (four per element
	// at the element limit).
	MaxAttrs = 16384
	// MaxNameBytes bounds each element and attribute name and each
	// namespace prefix (not namespace URIs, which are attribute values).
	MaxNameBytes = 256
)

// ErrTooLarge is returned (wrapped, with the limit that was hit; test with
// errors.Is) by Parse and ReadElement for input beyond the parse limits.
var ErrTooLarge = errors.New("xml: stanza exceeds the parse limits")

func tooLarge(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTooLarge, fmt.Sprintf(format, args...))
}

// budget is what one stanza has used of the parse limits; Parse and
// ReadElement share it so both refuse the same stanzas.
type budget struct {
	elements, attrs, bytes int
}

// start accounts for a start element at depth (the root is at 1) with
// attrs as the decoder gave them. Names are checked here, values and text
// by the byte count.
func (b *budget) start(name xml.Name, attrs []xml.Attr, depth int) error {
	b.elements++
	switch {
	case b.elements > MaxElements:
		return tooLarge("more than %d elements", MaxElements)
	case depth > MaxDepth:
		return tooLarge("nested deeper than %d elements", MaxDepth)
	case len(attrs) > MaxElementAttrs:
		return tooLarge("more than %d attributes on one element", MaxElementAttrs)
	}
	b.attrs += len(attrs)
	if b.attrs > MaxAttrs {
		return tooLarge("more than %d attributes", MaxAttrs)
	}
	if err := checkName(name.Local); err != nil {
		return err
	}
	for _, a := range attrs {
		if err := checkName(a.Name.Local); err != nil {
			return err
		}
	}
	return nil
}

// count adds n bytes of input (ReadElement, which sees no raw bytes,
// counts names, attribute values and text).
func (b *budget) count(n int) error {
	b.bytes += n
	if b.bytes > MaxStanzaBytes {
		return tooLarge("larger than %d bytes", MaxStanzaBytes)
	}
	return nil
}

func checkName(s string) error {
	if len(s) > MaxNameBytes {
		return tooLarge("a name or prefix longer than %d bytes", MaxNameBytes)
	}
	return nil
}

// duplicateAttr returns the name of an attribute that appears twice in
// attrs, comparing names as given (prefixes or resolved URIs, as the
// caller resolved them). Short lists, the usual case, are compared pair by
// pair; longer ones go through a set, so the cost stays linear up to
// MaxElementAttrs.
func duplicateAttr(attrs []xml.Attr) (xml.Name, bool) {
	const pairwise = 8
	if len(attrs) <= pairwise {
		for i := 1; i < len(attrs); i++ {
			for _, prev := range attrs[:i] {
				if prev.Name == attrs[i].Name {
					return attrs[i].Name, true
				}
			}
		}
		return xml.Name{}, false
	}
	seen := make(map[xml.Name]struct{}, len(attrs))
	for _, a := range attrs {
		if _, dup := seen[a.Name]; dup {
			return a.Name, true
		}
		seen[a.Name] = struct{}{}
	}
	return xml.Name{}, false
}

// textBuilder collects an element's character data. The decoder hands out
// text in pieces wherever a comment or CDATA section interrupts it;
// appending each piece to a string would copy the text so far every time
// (quadratic in the number of pieces), so pieces after the first go to a
// buffer, turned into a string once at the end element.
type textBuilder struct {
	el     *Element
	buf    []byte
	pieces int
}

func (t *textBuilder) add(p []byte) {
	switch t.pieces {
	case 0:
		t.el.Text = string(p)
	case 1:
		t.buf = append(append(t.buf, t.el.Text...), p...)
	default:
		t.buf = append(t.buf, p...)
	}
	t.pieces++
}

func (t *textBuilder) done() {
	if t.pieces > 1 {
		t.el.Text = string(t.buf)
	}
}

// Parse reads exactly one XML element from b. Leading and trailing
// whitespace is allowed; anything else around the element is an error.
// Input beyond the parse limits is refused with an error wrapping
// ErrTooLarge.
func Parse(b []byte) (*Element, error) {
	if len(b) > MaxStanzaBytes {
		return nil, tooLarge("larger than %d bytes", MaxStanzaBytes)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	// Namespaces are resolved here from raw tokens rather than by
	// encoding/xml, which leaves an undeclared prefix in Name.Space: a
	// stanza with an undeclared prefix is malformed and refused.
	var (
		root     *Element
		stack    []textBuilder
		inScope  = map[string][]string{} // prefix ("" = default) → URIs, innermost last
		declared [][]string              // per open element, the prefixes it declared
		lim      budget
	)
	lookup := func(prefix string) (string, bool) {
		if prefix == "xml" {
			return NSXML, true
		}
		if uris := inScope[prefix]; len(uris) > 0 {
			return uris[len(uris)-1], true
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
			if err := lim.start(t.Name, t.Attr, len(stack)+1); err != nil {
				return nil, err
			}
			if err := checkName(t.Name.Space); err != nil {
				return nil, err
			}
			// XML 1.0 "Unique Att Spec": no attribute name (prefix
			// included) twice, namespace declarations included.
			if n, dup := duplicateAttr(t.Attr); dup {
				return nil, fmt.Errorf("xml: duplicate attribute %q", n.Local)
			}
			var decl []string
			for _, a := range t.Attr {
				prefix, ok := "", false
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					ok = true
				case a.Name.Space == "xmlns":
					if a.Value == "" {
						return nil, errors.New("xml: a namespace prefix cannot be undeclared")
					}
					prefix, ok = a.Name.Local, true
				default:
					if err := checkName(a.Name.Space); err != nil {
						return nil, err
					}
				}
				if ok {
					inScope[prefix] = append(inScope[prefix], a.Value)
					decl = append(decl, prefix)
				}
			}
			declared = append(declared, decl)
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
				el.Attr = append(el.Attr, a)
			}
			// Namespaces in XML "Attribute Uniqueness": not twice the same
			// expanded name either (two prefixes for one URI).
			if n, dup := duplicateAttr(el.Attr); dup {
				return nil, fmt.Errorf("xml: duplicate attribute %q", n.Local)
			}
			if len(stack) > 0 {
				p := stack[len(stack)-1].el
				p.Children = append(p.Children, el)
			} else {
				root = el
			}
			stack = append(stack, textBuilder{el: el})
		case xml.EndElement:
			// RawToken does not check nesting; do it here.
			if len(stack) == 0 {
				return nil, errors.New("xml: unexpected end element")
			}
			top := &stack[len(stack)-1]
			ns, _ := lookup(t.Name.Space)
			if top.el.Name.Local != t.Name.Local || top.el.Name.Space != ns {
				return nil, fmt.Errorf("xml: element <%s> closed by </%s>", top.el.Name.Local, t.Name.Local)
			}
			top.done()
			stack = stack[:len(stack)-1]
			for _, prefix := range declared[len(declared)-1] {
				inScope[prefix] = inScope[prefix][:len(inScope[prefix])-1]
			}
			declared = declared[:len(declared)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, errors.New("xml: text outside the root element")
				}
				continue
			}
			stack[len(stack)-1].add(t)
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

// Clone returns a deep copy of e. The copy's elements, child lists and
// attributes are each allocated in one block (three allocations for the
// whole tree instead of up to three per element); every slice is capped at
// its length, so appending to one never writes into another's.
func (e *Element) Clone() *Element {
	if e == nil {
		return nil
	}
	var n, kids, attrs int
	e.count(&n, &kids, &attrs)
	c := cloner{
		elems: make([]Element, n),
		kids:  make([]*Element, kids),
		attrs: make([]xml.Attr, attrs),
	}
	return c.clone(e)
}

func (e *Element) count(n, kids, attrs *int) {
	*n++
	*kids += len(e.Children)
	*attrs += len(e.Attr)
	for _, ch := range e.Children {
		if ch != nil {
			ch.count(n, kids, attrs)
		}
	}
}

// cloner hands out the blocks of one Clone.
type cloner struct {
	elems []Element
	kids  []*Element
	attrs []xml.Attr
}

func (c *cloner) clone(e *Element) *Element {
	d := &c.elems[0]
	c.elems = c.elems[1:]
	d.Name, d.Text = e.Name, e.Text
	if k := len(e.Attr); k > 0 {
		d.Attr = c.attrs[:k:k]
		c.attrs = c.attrs[k:]
		copy(d.Attr, e.Attr)
	}
	if k := len(e.Children); k > 0 {
		d.Children = c.kids[:k:k]
		c.kids = c.kids[k:]
		for i, ch := range e.Children {
			if ch != nil {
				d.Children[i] = c.clone(ch)
			}
		}
	}
	return d
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
	return e.appendTo(make([]byte, 0, 256), "\x00")
}

// MarshalIn serializes e as a child of an element in namespace parentNS,
// omitting the xmlns declaration when it is inherited (as in a stanza inside
// a jabber:client or jabber:component:accept stream).
func (e *Element) MarshalIn(parentNS string) []byte {
	return e.appendTo(make([]byte, 0, 256), parentNS)
}

// Size returns len(e.Marshal()) without keeping the bytes.
func (e *Element) Size() int { return e.size("\x00") }

// SizeIn returns len(e.MarshalIn(parentNS)) without keeping the bytes:
// e's size as a child of an element in namespace parentNS.
func (e *Element) SizeIn(parentNS string) int { return e.size(parentNS) }

// appendTo appends e's serialization as a child of an element in parentNS
// ("\x00": the root, which declares its namespace) to b. Serialization
// appends to a byte slice and size counts the same bytes, each walking the
// tree itself: no writer interface between them and the bytes (a call per
// byte written), no strings.Replacer (escapes are found by table lookup and
// the runs between them copied whole).
func (e *Element) appendTo(b []byte, parentNS string) []byte {
	b = append(b, '<')
	b = append(b, e.Name.Local...)
	if e.Name.Space != parentNS {
		b = append(b, ` xmlns="`...)
		b = appendEscaped(b, e.Name.Space, &attrEscapeExtra, &attrEscapes)
		b = append(b, '"')
	}
	for i, a := range e.Attr {
		b = append(b, ' ')
		switch a.Name.Space {
		case "":
			b = append(b, a.Name.Local...)
		case NSXML:
			b = append(b, "xml:"...)
			b = append(b, a.Name.Local...)
		default:
			// Foreign-namespaced attributes are rare in stanzas; give each a
			// local prefix declared on the element itself.
			b = append(b, "xmlns:a"...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `="`...)
			b = appendEscaped(b, a.Name.Space, &attrEscapeExtra, &attrEscapes)
			b = append(b, `" a`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ':')
			b = append(b, a.Name.Local...)
		}
		b = append(b, `="`...)
		b = appendEscaped(b, a.Value, &attrEscapeExtra, &attrEscapes)
		b = append(b, '"')
	}
	if len(e.Children) == 0 && e.Text == "" {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	b = appendEscaped(b, e.Text, &textEscapeExtra, &textEscapes)
	for _, c := range e.Children {
		b = c.appendTo(b, e.Name.Space)
	}
	b = append(b, "</"...)
	b = append(b, e.Name.Local...)
	return append(b, '>')
}

// size is len(e.appendTo(nil, parentNS)), counted.
func (e *Element) size(parentNS string) int {
	n := 1 + len(e.Name.Local) // <name
	if e.Name.Space != parentNS {
		n += len(` xmlns=""`) + escapedLen(e.Name.Space, true)
	}
	for i, a := range e.Attr {
		n += 1 + len(a.Name.Local) + len(`=""`) + escapedLen(a.Value, true) // ' name=""'
		switch a.Name.Space {
		case "":
		case NSXML:
			n += len("xml:")
		default:
			d := decimalLen(i)
			n += len(`xmlns:a=""`) + d + escapedLen(a.Name.Space, true) + len(" a:") + d
		}
	}
	if len(e.Children) == 0 && e.Text == "" {
		return n + len("/>")
	}
	n += len(">") + escapedLen(e.Text, false)
	for _, c := range e.Children {
		n += c.size(e.Name.Space)
	}
	return n + len("</>") + len(e.Name.Local)
}

func decimalLen(i int) int {
	n := 1
	for ; i >= 10; i /= 10 {
		n++
	}
	return n
}

// appendEscaped appends s to b with the bytes that extra marks replaced by
// their escapes.
func appendEscaped(b []byte, s string, extra *[256]uint8, escapes *[256]string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		if extra[s[i]] != 0 {
			b = append(b, s[last:i]...)
			b = append(b, escapes[s[i]]...)
			last = i + 1
		}
	}
	return append(b, s[last:]...)
}

// The escapes of character data and of attribute values. An attribute
// value also escapes the whitespace that attribute-value normalization
// would turn into spaces (XML 1.0 §3.3.3); '\r' is escaped everywhere, as
// end-of-line handling would drop it.
var (
	textEscapes = [256]string{'&': "&amp;", '<': "&lt;", '>': "&gt;", '\r': "&#xD;"}
	attrEscapes = [256]string{'&': "&amp;", '<': "&lt;", '>': "&gt;", '"': "&quot;", '\r': "&#xD;", '\n': "&#xA;", '\t': "&#x9;"}
)

// TextSize is the length of s written as character data (escaped), as
// Marshal writes an element's text.
func TextSize(s string) int { return escapedLen(s, false) }

// TextPrefix answers TextSize for prefixes of one string: Size(k) is
// TextSize(s[:k]), in time bounded by textBlock however long s is. It keeps
// the bytes the escapes add before each block of textBlock bytes (nothing
// at all when s has nothing to escape). Escapes are per byte, so a
// prefix's size does not depend on what follows it.
type TextPrefix struct {
	s      string
	before []int32 // before[i]: what the escapes of s[:i*textBlock] add
}

const textBlock = 64

// NewTextPrefix reads s once.
func NewTextPrefix(s string) TextPrefix {
	var before []int32
	total := int32(0)
	for start := 0; start < len(s); start += textBlock {
		end := min(start+textBlock, len(s))
		add := int32(0)
		for i := start; i < end; i++ {
			add += int32(textEscapeExtra[s[i]])
		}
		if add != 0 && before == nil {
			before = make([]int32, (len(s)+textBlock-1)/textBlock+1)
			for i := range start/textBlock + 1 {
				before[i] = total // all 0 so far
			}
		}
		total += add
		if before != nil {
			before[start/textBlock+1] = total
		}
	}
	return TextPrefix{s: s, before: before}
}

// Size is TextSize(s[:k]) for 0 <= k <= len(s).
func (p *TextPrefix) Size(k int) int {
	if p.before == nil {
		return k
	}
	b := k / textBlock
	n := k + int(p.before[b])
	for i := b * textBlock; i < k; i++ {
		n += int(textEscapeExtra[p.s[i]])
	}
	return n
}

// textEscapeExtra is how many bytes the escape of each byte in character data adds (textEscapes).
var textEscapeExtra = [256]uint8{'&': 4, '\r': 4, '<': 3, '>': 3}

// MarshalSized is Marshal into a buffer made for size bytes, the size of
// e when the caller knows it (from Size, or by counting its edits): the
// bytes are written once, with no buffer growth. A wrong size costs only
// speed.
func (e *Element) MarshalSized(size int) []byte {
	return e.AppendMarshal(make([]byte, 0, size))
}

// AppendMarshal appends Marshal's bytes to dst and returns the extended
// slice, in dst's memory when its capacity suffices: for a caller that
// wants the serialized element after a header of its own, with no copy.
func (e *Element) AppendMarshal(dst []byte) []byte {
	return e.appendTo(dst, "\x00")
}

// escapedLen is the length of s escaped as character data (attr false) or
// as an attribute value (attr true).
func escapedLen(s string, attr bool) int {
	table := &textEscapeExtra
	if attr {
		table = &attrEscapeExtra
	}
	n := len(s)
	for i := 0; i < len(s); i++ {
		n += int(table[s[i]])
	}
	return n
}

// attrEscapeExtra is how many bytes the escape of each byte in an attribute value adds (attrEscapes).
var attrEscapeExtra = [256]uint8{'&': 4, '\r': 4, '<': 3, '>': 3, '"': 5, '\n': 4, '\t': 4}
