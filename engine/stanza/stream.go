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
// to jabber:client. The parse limits of Parse apply.
func ReadElement(start xml.StartElement, r xml.TokenReader) (*Element, error) {
	root := startToElement(start)
	stack := []*Element{root}
	count, size := 1, 0
	for len(stack) > 0 {
		tok, err := r.Token()
		if err == io.EOF {
			if len(stack) == 1 {
				// Some readers (mellium's IQ responses) end after the last
				// child without the stanza's end element.
				return root, nil
			}
			return nil, errors.New("xml: unexpected end of stream inside a stanza")
		}
		if err != nil {
			return nil, fmt.Errorf("xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			count++
			if count > MaxElements || len(stack) >= MaxDepth {
				return nil, ErrTooLarge
			}
			el := startToElement(t)
			p := stack[len(stack)-1]
			p.Children = append(p.Children, el)
			stack = append(stack, el)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			size += len(t)
			if size > MaxStanzaBytes {
				return nil, ErrTooLarge
			}
			stack[len(stack)-1].Text += string(t)
		}
	}
	return root, nil
}

func startToElement(t xml.StartElement) *Element {
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
	return el
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
