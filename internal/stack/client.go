package stack

import (
	"context"
	"encoding/xml"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/push2/push2/engine/stanza"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	xstanza "mellium.im/xmpp/stanza"
)

// Client is a real XMPP client (mellium) logged in to the stack's Prosody,
// with every message it receives delivered on Messages.
type Client struct {
	Session  *xmpp.Session
	Messages chan *stanza.Element
	// IQs receives every IQ get or set addressed to the client, after it
	// was answered: by OnIQ if set, else with service-unavailable (mellium's
	// default).
	IQs chan *stanza.Element
	// OnIQ, if set, answers IQ gets and sets: it returns the response
	// stanza (result or error). Set it before anything sends the IQs.
	OnIQ atomic.Pointer[func(iq *stanza.Element) *stanza.Element]
	done chan error
	once sync.Once
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
	c := &Client{Session: sess, Messages: make(chan *stanza.Element, 4096), IQs: make(chan *stanza.Element, 1024), done: make(chan error, 1)}
	go func() {
		c.done <- sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			switch start.Name.Local {
			case "message", "iq":
			default:
				return nil
			}
			el, err := stanza.ReadElement(*start, t)
			if err != nil {
				return err
			}
			if el.Name.Local == "iq" {
				typ := el.AttrValue("type")
				if typ != "get" && typ != "set" {
					return nil
				}
				if fn := c.OnIQ.Load(); fn != nil {
					if resp := (*fn)(el); resp != nil {
						if _, err := xmlstream.Copy(t, resp.TokenReader()); err != nil {
							return err
						}
					}
				}
				select {
				case c.IQs <- el:
				default:
				}
				return nil
			}
			select {
			case c.Messages <- el:
			default:
			}
			return nil
		}))
	}()
	if available {
		if err := sess.Send(context.WithoutCancel(ctx), xstanza.Presence{}.Wrap(nil)); err != nil {
			sess.Close()
			return nil, err
		}
	}
	return c, nil
}

// IQ sends an IQ (built as a stanza.Element, to/from as given) and returns
// the response stanza, or an error when ctx ends first.
//
// mellium v0.22 turns a context's end into a write deadline from a
// goroutine that can fire after the call returned and break a concurrent
// write, so the session only ever sees a context that never ends; ctx
// bounds the wait here instead.
func (c *Client) IQ(ctx context.Context, iq *stanza.Element) (*stanza.Element, error) {
	if iq.AttrValue("id") == "" {
		iq.SetAttr("id", fmt.Sprintf("iq-%p", iq))
	}
	type answer struct {
		el  *stanza.Element
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		el, err := c.iq(iq)
		ch <- answer{el, err}
	}()
	select {
	case a := <-ch:
		return a.el, a.err
	case <-ctx.Done():
		return nil, fmt.Errorf("IQ %s: %w", iq.AttrValue("id"), ctx.Err())
	}
}

func (c *Client) iq(iq *stanza.Element) (*stanza.Element, error) {
	resp, err := c.Session.SendIQ(context.Background(), iq.TokenReader())
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
	return stanza.ReadElement(start, resp)
}

// Send sends a stanza (see IQ for why ctx's end is not passed on).
func (c *Client) Send(ctx context.Context, el *stanza.Element) error {
	return c.Session.Send(context.WithoutCancel(ctx), el.TokenReader())
}

// Close ends the stream (a clean logout).
func (c *Client) Close() error {
	var err error
	c.once.Do(func() { err = c.Session.Close() })
	return err
}
