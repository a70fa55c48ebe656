package prosodytest

import (
	"context"
	"fmt"
	"net"

	"github.com/push2/push2/internal/xmppclient"

	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
)

// JID returns localpart@Domain().
func (s *Server) JID(localpart string) jid.JID {
	return jid.MustParse(localpart + "@" + s.opts.Domain)
}

// DialClient logs addr in over a plain TCP connection to C2SAddr() with
// SASL (SCRAM or PLAIN) and binds a resource. The server picks the resource (mellium
// v0.22 does not ask for addr's resourcepart); the session's LocalAddr is
// the full JID that was bound. There is no TLS: the session starts
// with the xmpp.Secure bit set, which is what lets mellium offer SASL on the
// unencrypted loopback connection that the test server allows.
//
// The returned session is not served yet: call Serve (usually in a
// goroutine) to receive stanzas, and Close it when done.
func (s *Server) DialClient(ctx context.Context, addr jid.JID, password string) (*xmpp.Session, error) {
	return xmppclient.Dial(ctx, xmppclient.DialOptions{Server: s.C2SAddr(), Addr: addr, Password: password, Plain: true})
}

// DialComponent connects to ComponentAddr() as ComponentDomain() with
// ComponentSecret() (XEP-0114) and returns the session after a successful
// handshake.
func (s *Server) DialComponent(ctx context.Context) (*xmpp.Session, error) {
	addr, err := jid.Parse(s.opts.ComponentDomain)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.ComponentAddr())
	if err != nil {
		return nil, fmt.Errorf("dial component port %s: %w", s.ComponentAddr(), err)
	}
	sess, err := component.NewSession(ctx, addr, []byte(s.opts.ComponentSecret), conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("component handshake as %s: %w", addr, err)
	}
	return sess, nil
}
