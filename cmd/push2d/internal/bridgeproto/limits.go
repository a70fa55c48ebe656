package bridgeproto

import (
	"context"
	"encoding/xml"
	"errors"
	"strconv"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// KindLimits is the <limits/> inside <features/>: push2d's parse limits.
const KindLimits = "limits"

// Limits are the parse limits push2d reads every stanza from the bridge
// with (engine/stanza's, docs/engine.md "Parsing limits"), counted over the
// whole stanza on the component stream: the <message/> or <iq/>, the
// protocol's element and the client's stanza inside it. push2d announces
// them in <features/> so that the bridge refuses or cuts what push2d would
// not read (docs/bridge-protocol.md "Stanzas over the limits") instead of
// sending and buffering it.
type Limits struct {
	Bytes        int // names, attribute values and text, unescaped
	Elements     int // elements, the stanza itself included
	Depth        int // nesting, the stanza being 1
	Attrs        int // attributes of the whole stanza, namespace declarations included
	ElementAttrs int // attributes of one element
	NameBytes    int // an element or attribute name, or a prefix
}

// DefaultLimits are the limits this push2d reads with.
func DefaultLimits() Limits {
	return Limits{
		Bytes: stanza.MaxStanzaBytes, Elements: stanza.MaxElements, Depth: stanza.MaxDepth,
		Attrs: stanza.MaxAttrs, ElementAttrs: stanza.MaxElementAttrs, NameBytes: stanza.MaxNameBytes,
	}
}

// fields names each limit on the wire, in the order they are written.
func (l *Limits) fields() []struct {
	name string
	v    *int
} {
	return []struct {
		name string
		v    *int
	}{
		{"max-bytes", &l.Bytes}, {"max-elements", &l.Elements}, {"max-depth", &l.Depth},
		{"max-attrs", &l.Attrs}, {"max-element-attrs", &l.ElementAttrs}, {"max-name-bytes", &l.NameBytes},
	}
}

// Element renders <limits/>.
func (l Limits) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindLimits)
	for _, f := range l.fields() {
		el.SetAttr(f.name, strconv.Itoa(*f.v))
	}
	return el
}

// ParseLimits reads <limits/>. Every limit must be a positive integer: a
// bridge that applied a wrong one would refuse what push2d reads, or send
// what it refuses.
func ParseLimits(el *stanza.Element) (Limits, error) {
	var l Limits
	if err := expect(el, KindLimits); err != nil {
		return l, err
	}
	for _, f := range l.fields() {
		n, err := strconv.Atoi(el.AttrValue(f.name))
		if err != nil || n <= 0 {
			return Limits{}, stanza.BadRequest("<limits/> needs %s as a positive integer", f.name)
		}
		*f.v = n
	}
	return l, nil
}

// maxKeptValue bounds the attribute values outline keeps (a JID is at
// most 3071 bytes, RFC 7622 §3.1; ids are shorter): a longer value is not
// one a bridge sends, and an answer never echoes it.
const maxKeptValue = 3071

// outline passes a stanza's tokens through to the parser and remembers
// the first child's name and the few attributes push2d answers with, so
// that a stanza the parser refuses (over the limits) can still be answered:
// the IQ with an error, the event with an ack (docs/bridge-protocol.md
// "Stanzas over the limits"). It keeps nothing else, whatever the size of
// the stanza.
type outline struct {
	r     xml.TokenReader
	depth int
	child *stanza.Element // the stanza's first child, names and kept attributes only
}

// outlineAttrs are the attributes of a request or event push2d needs to
// answer it and to log what it refused.
var outlineAttrs = []string{"id", "account", "registration", "trigger"}

func (o *outline) Token() (xml.Token, error) {
	tok, err := o.r.Token()
	switch t := tok.(type) {
	case xml.StartElement:
		o.depth++
		if o.depth == 1 && o.child == nil {
			o.child = &stanza.Element{Name: t.Name}
			o.child.Attr = keptAttrs(t.Attr, outlineAttrs)
		}
	case xml.EndElement:
		o.depth--
	}
	return tok, err
}

// keptAttrs returns the attributes of attrs named in names (without a
// namespace), skipping values longer than maxKeptValue.
func keptAttrs(attrs []xml.Attr, names []string) []xml.Attr {
	var out []xml.Attr
	for _, a := range attrs {
		if a.Name.Space == "" && len(a.Value) <= maxKeptValue && contains(names, a.Name.Local) {
			out = append(out, xml.Attr{Name: a.Name, Value: a.Value})
		}
	}
	return out
}

// unreadableError is what a stanza push2d could not read is answered
// with: policy-violation naming the limit for one over the limits,
// bad-request for anything else wrong in it (a duplicate attribute).
func unreadableError(err error) *stanza.Error {
	if errors.Is(err, stanza.ErrTooLarge) {
		why := strings.TrimPrefix(err.Error(), stanza.ErrTooLarge.Error()+": ")
		return stanza.NewError(stanza.Modify, stanza.CondPolicyViolation,
			"the request is over push2d's parse limits (%s)", why)
	}
	return stanza.BadRequest("push2d cannot read the request: %v", err)
}

// answerUnreadable answers a stanza the parser refused, from its outline:
// start (the stanza's own start element) and the first child's outline. An
// IQ request gets an error, an event an ack with the error's condition, so
// that neither the client nor the bridge's buffer waits for an answer that
// would never come. Anything else is only logged.
func (s *Service) answerUnreadable(start xml.StartElement, child *stanza.Element, err error) {
	st := &stanza.Element{Name: xml.Name{Space: stanza.NSClient, Local: start.Name.Local}}
	st.Attr = keptAttrs(start.Attr, []string{"from", "to", "id", "type"})
	if child != nil {
		st.Append(child)
	}
	se := unreadableError(err)
	var request, acct string
	if child != nil {
		request, acct = child.Name.Local, child.AttrValue("account")
	}
	s.log.Warn("unreadable stanza from the server", "kind", start.Name.Local, "id", st.AttrValue("id"),
		"request", request, "account", acct, "err", err)
	if !s.fromDomain(st) {
		return
	}
	switch {
	case st.Name.Local == "iq" && (st.AttrValue("type") == "get" || st.AttrValue("type") == "set"):
		s.reply(st, nil, se)
	case st.Name.Local == "message" && child != nil && child.Is(NS, KindEvent):
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		s.ack(ctx, st.AttrValue("from"), child.AttrValue("id"), se)
	}
}
