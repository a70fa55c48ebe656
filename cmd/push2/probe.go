package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/xmppclient"

	"mellium.im/xmpp/jid"
	xstanza "mellium.im/xmpp/stanza"
)

// probeResource is the resource the probe's device asks for: its
// registration id, so that the probe can log in again as the same device
// and disable what it enabled.
const probeResource = "push2-probe"

// runProbe is `push2 probe`: an operator's end-to-end check of a running
// installation, through the real server, the bridge and push2d. Two
// accounts of the operator's (dedicated to this, with no other sessions)
// play a device and its push service: the device enables pushes (Push 2.0,
// notify-only, every message) to the service account and logs out, the
// service writes to it, and the probe waits for the notification to arrive
// at the service, from the device's domain. Then the device logs in again,
// takes its offline message and disables the registration, so a probe
// leaves nothing behind. Each step prints one line; a failing step says
// what to look at.
func runProbe(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "host:port of the XMPP server's c2s listener (default: the device's domain, port 5222)")
	device := fs.String("device", "", "the account that plays the device (a bare JID)")
	devicePW := fs.String("device-password-file", "", "file holding the device account's password")
	service := fs.String("service", "", "the account that plays the push service (a bare JID)")
	servicePW := fs.String("service-password-file", "", "file holding the service account's password")
	plain := fs.Bool("plain", false, "no STARTTLS (only for a server on a loopback address)")
	insecure := fs.Bool("insecure-skip-verify", false, "accept any TLS certificate (a server with a self-signed one)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for each step")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *device == "" || *service == "" || *devicePW == "" || *servicePW == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: push2 probe -device JID -device-password-file F -service JID -service-password-file F [-server HOST:PORT] [-plain] [-insecure-skip-verify]")
		return 2
	}
	p := &probe{out: stdout, timeout: *timeout, plain: *plain}
	if *insecure {
		p.tls = &tls.Config{InsecureSkipVerify: true}
	}
	var err error
	if p.device, err = accountFlag("-device", *device); err == nil {
		p.service, err = accountFlag("-service", *service)
	}
	if err == nil && p.device.Equal(p.service) {
		err = errors.New("-device and -service must be two different accounts")
	}
	if err == nil {
		p.devicePW, err = readSecret(*devicePW)
	}
	if err == nil {
		p.servicePW, err = readSecret(*servicePW)
	}
	if err != nil {
		fmt.Fprintln(stderr, "push2 probe:", err)
		return 2
	}
	p.server = *server
	if p.server == "" {
		p.server = net.JoinHostPort(p.device.Domain().String(), "5222")
	}
	if err := p.run(); err != nil {
		fmt.Fprintln(stderr, "push2 probe:", err)
		return 1
	}
	fmt.Fprintln(stdout, "ok: the push went through")
	return 0
}

func accountFlag(name, v string) (jid.JID, error) {
	j, err := jid.Parse(v)
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return jid.JID{}, fmt.Errorf("%s %q: want a bare JID (user@domain)", name, v)
	}
	return j, nil
}

// readSecret reads a password file: its first line, without the line end.
// The password is never printed.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

type probe struct {
	out                 io.Writer
	server              string
	device, service     jid.JID
	devicePW, servicePW string
	plain               bool
	tls                 *tls.Config
	timeout             time.Duration
}

func (p *probe) say(format string, args ...any) { fmt.Fprintf(p.out, format+"\n", args...) }

func (p *probe) login(addr jid.JID, password string) (*xmppclient.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	sess, err := xmppclient.Dial(ctx, xmppclient.DialOptions{Server: p.server, Addr: addr, Password: password, Plain: p.plain, TLS: p.tls, RequestResource: true})
	if err != nil {
		return nil, err
	}
	return xmppclient.Serve(sess), nil
}

func (p *probe) iq(c *xmppclient.Client, payload *stanza.Element) (*stanza.Element, error) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	iq := stanza.NewElement(stanza.NSClient, "iq", "type", "set")
	iq.Append(payload)
	resp, err := c.IQ(ctx, iq)
	if err != nil {
		return nil, err
	}
	if resp.AttrValue("type") != "result" {
		return resp, fmt.Errorf("answered %s", describeError(resp))
	}
	return resp, nil
}

func (p *probe) run() error {
	svcAddr, _ := p.service.WithResource(probeResource + "-service")
	svc, err := p.login(svcAddr, p.servicePW)
	if err != nil {
		return fmt.Errorf("service account: %w", err)
	}
	defer svc.Close()
	// Available, so that messages to the bare JID reach this session.
	if err := svc.Session.Send(context.Background(), xstanza.Presence{}.Wrap(nil)); err != nil {
		return fmt.Errorf("service account: presence: %w", err)
	}
	p.say("logged in as %s (the push service)", svc.Session.LocalAddr())

	addr, _ := p.device.WithResource(probeResource)
	dev, err := p.login(addr, p.devicePW)
	if err != nil {
		return fmt.Errorf("device account: %w", err)
	}
	p.say("logged in as %s (the device)", dev.Session.LocalAddr())
	var token [8]byte
	rand.Read(token[:])
	client := "push2-probe-" + hex.EncodeToString(token[:])
	enable := stanza.NewElement(stanza.NSPush2, "enable")
	enable.Append(stanza.NewElement(stanza.NSPush2, "service").WithText(p.service.String()))
	enable.Append(stanza.NewElement(stanza.NSPush2, "client").WithText(client))
	match := stanza.NewElement(stanza.NSPush2, "match", "profile", "urn:xmpp:push2:match:all")
	match.Append(stanza.NewElement("urn:xmpp:push2:send:notify-only:0", "send"))
	enable.Append(match)
	if _, err := p.iq(dev, enable); err != nil {
		dev.Close()
		return fmt.Errorf("enable %w (a service-unavailable means the bridge is not loaded on %s or push2d is not connected: see push2d check --connect)", err, p.device.Domain())
	}
	p.say("enabled pushes to %s (notify-only, client %s)", p.service, client)
	registration := dev.Session.LocalAddr()
	if err := dev.Close(); err != nil {
		return fmt.Errorf("device log out: %w", err)
	}
	// Prosody handles the end of the stream before the next connection's
	// message; a short pause makes sure the session is gone.
	time.Sleep(500 * time.Millisecond)

	start := time.Now()
	msg := stanza.NewElement(stanza.NSClient, "message", "type", "chat", "to", p.device.String(), "id", client)
	msg.Append(stanza.NewElement(stanza.NSClient, "body").WithText("push2 probe"))
	if err := svc.Send(context.Background(), msg); err != nil {
		return fmt.Errorf("send the message: %w", err)
	}
	p.say("device offline; sent it a message")
	pushErr := p.waitPush(svc, client, start)

	// Clean up whatever happened: log in again as the same device, take
	// the offline message and disable the registration.
	if err := p.cleanup(registration); err != nil {
		if pushErr != nil {
			return pushErr
		}
		return err
	}
	return pushErr
}

func (p *probe) waitPush(svc *xmppclient.Client, client string, start time.Time) error {
	deadline := time.After(p.timeout)
	for {
		select {
		case m := <-svc.Messages:
			n := m.Child(stanza.NSPush2, "notification")
			if n == nil {
				continue
			}
			if got := n.Child(stanza.NSPush2, "client"); got == nil || got.Text != client {
				continue // another registration's push to this account
			}
			if from := m.AttrValue("from"); from != p.device.Domain().String() {
				return fmt.Errorf("the notification came from %q, not from the device's server %s", from, p.device.Domain())
			}
			p.say("push arrived after %s: %s", time.Since(start).Round(time.Millisecond), m)
			return nil
		case err := <-svc.Done():
			return fmt.Errorf("the service account's session ended while waiting for the push: %v", err)
		case <-deadline:
			return fmt.Errorf("no push within %s: look at push2d's log (journalctl -u push2d: an outcome line says why it did not push) and Prosody's (is the bridge loaded, does it name push2d?)", p.timeout)
		}
	}
}

func (p *probe) cleanup(registration jid.JID) error {
	dev, err := p.login(registration, p.devicePW)
	if err != nil {
		return fmt.Errorf("device account, logging in again to disable: %w", err)
	}
	defer dev.Close()
	if got := dev.Session.LocalAddr(); !got.Equal(registration) {
		return fmt.Errorf("logged in again as %s, not %s: the registration %q stays (remove it with DELETE on push2d's admin interface or let it expire)", got, registration, registration.Resourcepart())
	}
	if err := dev.Session.Send(context.Background(), xstanza.Presence{}.Wrap(nil)); err != nil {
		return fmt.Errorf("device presence: %w", err)
	}
	if _, err := p.iq(dev, stanza.NewElement(stanza.NSPush2, "disable")); err != nil {
		return fmt.Errorf("disable %w", err)
	}
	p.say("disabled the registration again")
	return nil
}

// describeError renders an IQ error as "type/condition: text".
func describeError(resp *stanza.Element) string {
	e := resp.Child("", "error")
	if e == nil {
		return "type=" + resp.AttrValue("type")
	}
	cond, text := "", ""
	for _, c := range e.Children {
		if c.Name.Space != stanza.NSStanzaError {
			continue
		}
		if c.Name.Local == "text" {
			text = c.Text
		} else {
			cond = c.Name.Local
		}
	}
	s := e.AttrValue("type") + "/" + cond
	if text != "" {
		s += ": " + text
	}
	return s
}
