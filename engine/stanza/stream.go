package stanza

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

func streamNS(ns string) bool {
	return ns == NSComponentAccept || ns == NSServer || ns == NSClient
}

// ReadElement builds an Element from a token stream whose start element was
// already read (as XMPP libraries hand out stanzas): start, then r's tokens
// up to and including the matching end element (or the end of r right
// after the last child). Tokens must have resolved
// namespaces (as from xml.Decoder.Token). Stream namespaces are normalized
// to jabber:client. The parse limits of Parse apply, the byte limit to the
// names, attribute values and text the tokens carry (a stream hands out no
// raw bytes); input beyond them is refused with an error wrapping
// ErrTooLarge.
func ReadElement(start xml.StartElement, r xml.TokenReader) (*Element, error) {
	var lim budget
	root, err := startToElement(&lim, start, 1)
	if err != nil {
		return nil, err
	}
	stack := []textBuilder{{el: root}}
	for len(stack) > 0 {
		tok, err := r.Token()
		if err == io.EOF {
			if len(stack) == 1 {
				// Some readers (mellium's IQ responses) end after the last
				// child without the stanza's end element.
				stack[0].done()
				return root, nil
			}
			return nil, errors.New("xml: unexpected end of stream inside a stanza")
		}
		if err != nil {
			return nil, fmt.Errorf("xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			el, err := startToElement(&lim, t, len(stack)+1)
			if err != nil {
				return nil, err
			}
			p := stack[len(stack)-1].el
			p.Children = append(p.Children, el)
			stack = append(stack, textBuilder{el: el})
		case xml.EndElement:
			stack[len(stack)-1].done()
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if err := lim.count(len(t)); err != nil {
				return nil, err
			}
			stack[len(stack)-1].add(t)
		}
	}
	return root, nil
}

func startToElement(lim *budget, t xml.StartElement, depth int) (*Element, error) {
	if err := lim.start(t.Name, t.Attr, depth); err != nil {
		return nil, err
	}
	n := len(t.Name.Local)
	for _, a := range t.Attr {
		n += len(a.Name.Local) + len(a.Value)
	}
	if err := lim.count(n); err != nil {
		return nil, err
	}
	el := &Element{Name: t.Name}
	if streamNS(el.Name.Space) || el.Name.Space == "" {
		el.Name.Space = NSClient
	}
	for _, a := range t.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		if a.Name.Space == "xml" {
			a.Name.Space = NSXML
		}
		el.Attr = append(el.Attr, a)
	}
	if n, dup := duplicateAttr(el.Attr); dup {
		return nil, fmt.Errorf("xml: duplicate attribute %q", n.Local)
	}
	return el, nil
}

// TokenReader returns e as a token stream for an XMPP stream: elements in
// jabber:client that inherit it from their parent (the stanza itself
// included) are written without a namespace, so they take the stream's
// default (jabber:client, jabber:component:accept or jabber:server);
// everything else carries its namespace.
func (e *Element) TokenReader() xml.TokenReader {
	var toks []xml.Token
	var walk func(el *Element, inherited string)
	walk = func(el *Element, inherited string) {
		name := el.Name
		if name.Space == inherited {
			name.Space = ""
		}
		start := xml.StartElement{Name: name}
		// encoding/xml writes the xml: prefix for attributes in the XML
		// namespace URI, and declares a prefix for any other.
		start.Attr = append(start.Attr, el.Attr...)
		toks = append(toks, start)
		if el.Text != "" {
			toks = append(toks, xml.CharData(el.Text))
		}
		for _, c := range el.Children {
			walk(c, el.Name.Space)
		}
		toks = append(toks, xml.EndElement{Name: name})
	}
	walk(e, NSClient)
	return &sliceReader{toks: toks}
}

type sliceReader struct {
	toks []xml.Token
	i    int
}

func (s *sliceReader) Token() (xml.Token, error) {
	if s.i >= len(s.toks) {
		return nil, io.EOF
	}
	t := s.toks[s.i]
	s.i++
	return t, nil
}
