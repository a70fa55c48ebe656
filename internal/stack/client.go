package stack

import (
	"context"
	"encoding/xml"
	"fmt"
	"sync"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/stanza"

	"github.com/push2/push2/engine"
)

// Client is a real XMPP client (mellium) logged in to the stack's Prosody,
// with every message it receives delivered on Messages.
type Client struct {
	Session  *xmpp.Session
	Messages chan *engine.Element
	done     chan error
	once     sync.Once
}

// Login creates the account if needed, logs in asking for resource, serves the session and,
// if available is true, sends initial presence (which also makes Prosody
// deliver stored offline messages).
func (s *Stack) Login(ctx context.Context, localpart, resource, password string, available bool) (*Client, error) {
	if err := s.Prosody.CreateUser(localpart, password); err != nil {
		return nil, err
	}
	addr, err := s.Prosody.JID(localpart).WithResource(resource)
	if err != nil {
		return nil, err
	}
	sess, err := s.Prosody.DialClient(ctx, addr, password)
	if err != nil {
		return nil, err
	}
	c := &Client{Session: sess, Messages: make(chan *engine.Element, 4096), done: make(chan error, 1)}
	go func() {
		c.done <- sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local != "message" {
				return nil
			}
			el, err := engine.ReadElement(*start, t)
			if err != nil {
				return err
			}
			select {
			case c.Messages <- el:
			default:
			}
			return nil
		}))
	}()
	if available {
		if err := sess.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
			sess.Close()
			return nil, err
		}
	}
	return c, nil
}

// IQ sends an IQ (built as an engine.Element, to/from as given) and returns
// the response stanza.
func (c *Client) IQ(ctx context.Context, iq *engine.Element) (*engine.Element, error) {
	if iq.AttrValue("id") == "" {
		iq.SetAttr("id", fmt.Sprintf("iq-%p", iq))
	}
	resp, err := c.Session.SendIQ(ctx, iq.TokenReader())
	if err != nil {
		return nil, err
	}
	defer resp.Close()
	tok, err := resp.Token()
	if err != nil {
		return nil, err
	}
	start, ok := tok.(xml.StartElement)
	if !ok {
		return nil, fmt.Errorf("unexpected token %T in IQ response", tok)
	}
	return engine.ReadElement(start, resp)
}

// Send sends a stanza.
func (c *Client) Send(ctx context.Context, el *engine.Element) error {
	return c.Session.Send(ctx, el.TokenReader())
}

// Close ends the stream (a clean logout).
func (c *Client) Close() error {
	var err error
	c.once.Do(func() { err = c.Session.Close() })
	return err
}
