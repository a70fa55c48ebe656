package stack

import (
	"context"

	"github.com/push2/push2/internal/xmppclient"

	xstanza "mellium.im/xmpp/stanza"
)

// Client is a real XMPP client (mellium) logged in to the stack's Prosody,
// with every message it receives delivered on Messages.
type Client = xmppclient.Client

// Login creates the account if needed, logs in asking for resource, serves the session and,
// if available is true, sends initial presence (which also makes Prosody
// deliver stored offline messages).
func (s *Stack) Login(ctx context.Context, localpart, resource, password string, available bool) (*Client, error) {
	if err := s.Server.CreateUser(localpart, password); err != nil {
		return nil, err
	}
	addr, err := s.Server.JID(localpart).WithResource(resource)
	if err != nil {
		return nil, err
	}
	sess, err := s.Server.DialClient(ctx, addr, password)
	if err != nil {
		return nil, err
	}
	c := xmppclient.Serve(sess)
	if available {
		if err := sess.Send(context.WithoutCancel(ctx), xstanza.Presence{}.Wrap(nil)); err != nil {
			sess.Close()
			return nil, err
		}
	}
	return c, nil
}
