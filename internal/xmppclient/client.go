// Package xmppclient is a small XMPP client on mellium: dial a server
// (STARTTLS or, on loopback only, plain TCP; SASL SCRAM or PLAIN), serve the
// session, and send stanzas and IQs as engine/stanza elements. The
// end-to-end tests log in with it (internal/stack) and `push2 probe` uses it
// against a real server.
package xmppclient

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/push2/push2/engine/stanza"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// DialOptions say where and how to log in.
type DialOptions struct {
	// Server is host:port of the c2s listener.
	Server string
	// Addr is the account, and the resource to ask for if
	// RequestResource is set (the session's LocalAddr is what the server
	// bound).
	Addr jid.JID
	// RequestResource asks the server for Addr's resource. Without it the
	// server picks one (mellium asks for the resource of the stream's
	// address, which the server's stream header has made the bare JID).
	RequestResource bool
	Password        string
	// Plain skips STARTTLS. Only for a server on a loopback address: the
	// password would otherwise cross the network in clear.
	Plain bool
	// TLS is the configuration for STARTTLS; nil means the system roots and
	// ServerName = Addr's domain.
	TLS *tls.Config
}

// Dial connects and logs in. The returned session is not served yet: call
// Serve.
func Dial(ctx context.Context, o DialOptions) (*xmpp.Session, error) {
	host, _, err := net.SplitHostPort(o.Server)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", o.Server, err)
	}
	if o.Plain && !isLoopback(host) {
		return nil, errors.New("a connection without TLS is only allowed to a loopback address")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", o.Server)
	if err != nil {
		return nil, fmt.Errorf("dial c2s %s: %w", o.Server, err)
	}
	mechs := []sasl.Mechanism{sasl.ScramSha256, sasl.ScramSha1, sasl.Plain}
	var features []xmpp.StreamFeature
	var state xmpp.SessionState
	if o.Plain {
		// The Secure bit is what lets mellium offer SASL on the
		// unencrypted loopback connection.
		state = xmpp.Secure
	} else {
		cfg := o.TLS
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = o.Addr.Domain().String()
		}
		features = append(features, xmpp.StartTLS(cfg))
	}
	bind := xmpp.BindResource()
	if o.RequestResource && o.Addr.Resourcepart() != "" {
		bind.Negotiate = func(ctx context.Context, s *xmpp.Session, _ interface{}) (xmpp.SessionState, io.ReadWriter, error) {
			return bindAs(s, o.Addr.Resourcepart())
		}
	}
	features = append(features, xmpp.SASL("", o.Password, mechs...), bind)
	sess, err := xmpp.NewSession(ctx, o.Addr.Domain(), o.Addr, conn, state,
		xmpp.NewNegotiator(func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("log in %s: %w", o.Addr.Bare(), err)
	}
	return sess, nil
}

// bindAs is the client side of resource binding (RFC 6120 7) asking for
// resource. mellium v0.22's own bind sends an empty <resource/> whatever the
// address says, so the server always picks one; a client that must come
// back as the same resource (its Push 2.0 registration id) binds itself.
func bindAs(s *xmpp.Session, resource string) (xmpp.SessionState, io.ReadWriter, error) {
	id := fmt.Sprintf("bind-%x", time.Now().UnixNano())
	req := stanza.NewElement(stanza.NSClient, "iq", "type", "set", "id", id)
	req.Append(stanza.NewElement(nsBind, "bind").Append(stanza.NewElement(nsBind, "resource").WithText(resource)))
	w := s.TokenWriter()
	defer w.Close()
	if _, err := xmlstream.Copy(w, req.TokenReader()); err != nil {
		return 0, nil, err
	}
	if err := w.Flush(); err != nil {
		return 0, nil, err
	}
	r := s.TokenReader()
	defer r.Close()
	tok, err := r.Token()
	if err != nil {
		return 0, nil, err
	}
	start, ok := tok.(xml.StartElement)
	if !ok {
		return 0, nil, fmt.Errorf("bind: unexpected %T", tok)
	}
	resp, err := stanza.ReadElement(start, r)
	if err != nil {
		return 0, nil, err
	}
	if !resp.Is(stanza.NSClient, "iq") || resp.AttrValue("id") != id {
		return 0, nil, fmt.Errorf("bind: unexpected answer %s", resp)
	}
	if resp.AttrValue("type") != "result" {
		return 0, nil, fmt.Errorf("bind %q refused: %s", resource, resp)
	}
	bound, err := jid.Parse(resp.Child(nsBind, "bind").ChildText(nsBind, "jid"))
	if err != nil {
		return 0, nil, fmt.Errorf("bind: the server bound an invalid JID: %w", err)
	}
	s.UpdateAddr(bound)
	return xmpp.Ready, nil, nil
}

const nsBind = "urn:ietf:params:xml:ns:xmpp-bind"

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

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

// Serve serves sess in a goroutine: every message it receives goes to
// Messages, every IQ get or set to IQs (after OnIQ answered it).
func Serve(sess *xmpp.Session) *Client {
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
	return c
}

// Done receives Serve's result when the session ends.
func (c *Client) Done() <-chan error { return c.done }

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
