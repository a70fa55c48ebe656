package main

import (
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/push2/push2/cmd/push2d/internal/bridgeproto"
)

// defaultConfigPath is where `make install` puts the configuration.
const defaultConfigPath = "/etc/push2/push2d.toml"

// runCheck is `push2d check [--config FILE] [--connect] [--timeout D]`:
// validate the configuration and, with --connect, log in to the server as
// the component once and ask each of component.domains who it is. Every
// failure names what to change. Exit status: 0 ok, 1 the connection check
// failed, 2 usage or configuration errors (as at start-up).
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("push2d check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", defaultConfigPath, "configuration file")
	connect := fs.Bool("connect", false, "also connect to the XMPP server as the component and check the secret and the domains")
	timeout := fs.Duration("timeout", 10*time.Second, "how long --connect waits for the server")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "push2d check: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := loadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(stderr, "push2d:", err)
		return 2
	}
	fmt.Fprintf(stdout, "push2d: configuration ok (%s)\n", *configPath)
	if !cfg.Admin.Token.configured() {
		fmt.Fprintln(stdout, "push2d: note: "+noAdminToken)
	}
	if !*connect {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := checkConnection(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "push2d:", err)
		return 1
	}
	return 0
}

// checkConnection connects to component.address, completes the XEP-0114
// handshake as component.jid, and sends each configured domain a
// disco#info query. Each way of failing gets its own error text, naming
// the setting on either side that must change (docs/push2d.md "Checking
// an installation").
func checkConnection(ctx context.Context, cfg Config, out io.Writer) error {
	c := cfg.Component
	addr := jid.MustParse(c.JID)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Address)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("nothing is listening on %s (component.address): start Prosody, and check that prosody.cfg.lua sets component_ports and component_interfaces to match, in the global section (before the first VirtualHost or Component line, where Prosody reads them)", c.Address)
		}
		return fmt.Errorf("cannot reach %s (component.address): %w", c.Address, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	sess, err := component.NewSession(ctx, addr, []byte(c.Secret), conn)
	if err != nil {
		return handshakeError(c, err)
	}
	defer sess.Close()
	fmt.Fprintf(out, "push2d: component connection ok: %s accepted %s and its secret\n", c.Address, c.JID)

	go sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error { return nil }))
	var failed []error
	for _, domain := range c.Domains {
		if err := checkDomain(ctx, sess, addr, domain, c.Address); err != nil {
			failed = append(failed, err)
			continue
		}
		fmt.Fprintf(out, "push2d: domain %s ok: mod_push2_bridge is loaded there\n", domain)
	}
	return errors.Join(failed...)
}

// handshakeError turns a failed XEP-0114 handshake into what to fix.
// The error text never holds the secret (mellium reports conditions, not
// the handshake's input).
func handshakeError(c ComponentConfig, err error) error {
	var se stream.Error
	if errors.As(err, &se) {
		switch se.Err {
		case stream.NotAuthorized.Err:
			return fmt.Errorf("the server refused the component secret for %s: component.secret (or the file of component.secret_file) must equal component_secret under Component %q in prosody.cfg.lua", c.JID, c.JID)
		case stream.HostUnknown.Err, stream.ImproperAddressing.Err:
			return fmt.Errorf("the server at %s has no external component %s: add  Component %q  with its component_secret to prosody.cfg.lua (and reload Prosody), or set component.jid to the name it has there", c.Address, c.JID, c.JID)
		case stream.Conflict.Err:
			return fmt.Errorf("the server accepted the secret for %s, but another connection is already logged in as that component (is push2d running? then the connection works; stop it to run this check alone)", c.JID)
		}
		return fmt.Errorf("the server at %s refused the component %s: %s", c.Address, c.JID, se.Error())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%s closed the connection during the handshake: is it an XMPP server's component port (Prosody: component_ports), not its client port?", c.Address)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no answer from %s within the timeout: is it an XMPP server's component port (Prosody: component_ports)?", c.Address)
	}
	return fmt.Errorf("component handshake with %s as %s failed: %w", c.Address, c.JID, err)
}

// checkDomain asks domain for its disco#info as the component: a host of
// this server with the bridge loaded lists the bridge protocol's namespace (bridgeproto.NS); one without the
// bridge answers without it; a domain that is not a host of the server
// answers with an error (or, over s2s, without the feature).
func checkDomain(ctx context.Context, sess *xmpp.Session, from jid.JID, domain, server string) error {
	iq := stanza.IQ{Type: stanza.GetIQ, To: jid.MustParse(domain), From: from}
	q := xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: nsDiscoInfo, Local: "query"}})
	resp, err := sess.SendIQElement(ctx, q, iq)
	if err != nil {
		return fmt.Errorf("domain %s (component.domains): no answer from the server at %s: %w", domain, server, err)
	}
	defer resp.Close()
	var answer struct {
		Type     string `xml:"type,attr"`
		Features []struct {
			Var string `xml:"var,attr"`
		} `xml:"http://jabber.org/protocol/disco#info query>feature"`
		Error struct {
			Condition []struct{ XMLName xml.Name } `xml:",any"`
		} `xml:"error"`
	}
	if err := xml.NewTokenDecoder(resp).Decode(&answer); err != nil {
		return fmt.Errorf("domain %s (component.domains): unreadable answer: %w", domain, err)
	}
	if answer.Type != "result" {
		cond := "an error"
		for _, c := range answer.Error.Condition {
			if c.XMLName.Space == "urn:ietf:params:xml:ns:xmpp-stanzas" && c.XMLName.Local != "text" {
				cond = c.XMLName.Local
			}
		}
		return fmt.Errorf("domain %s (component.domains) is not a VirtualHost of the server at %s (it answered %s): list the domains of its VirtualHost lines where push2_bridge is loaded", domain, server, cond)
	}
	for _, f := range answer.Features {
		if f.Var == bridgeproto.NS {
			return nil
		}
	}
	return fmt.Errorf("domain %s (component.domains) answers, but mod_push2_bridge is not loaded on it: add \"push2_bridge\" to modules_enabled under VirtualHost %q and reload Prosody (its log then says \"push2 bridge loaded\"); if %s is not a VirtualHost of this server, remove it from component.domains", domain, domain, domain)
}

const nsDiscoInfo = "http://jabber.org/protocol/disco#info"
