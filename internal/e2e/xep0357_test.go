package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
)

// The app server is the pusher client's full JID: an IQ to a user's bare
// JID is answered by the server itself, while real app servers are
// services (a domain or a component) that receive them.
const xep0357EnableXML = `<enable xmlns="urn:xmpp:push:0" jid="%s" node="node-1">
  <x xmlns="jabber:x:data" type="submit">
    <field var="FORM_TYPE"><value>http://jabber.org/protocol/pubsub#publish-options</value></field>
    <field var="secret"><value>app-server-secret</value></field>
  </x>
</enable>`

// appServer makes c answer pubsub publishes like an XEP-0357 app server:
// with a result, or with the error answer returns.
func appServer(c *stack.Client, answer func(iq *stanza.Element) *stanza.Element) {
	fn := func(iq *stanza.Element) *stanza.Element {
		if r := answer(iq); r != nil {
			return r
		}
		return stanza.NewElement(stanza.NSClient, "iq", "type", "result", "id", iq.AttrValue("id"), "to", iq.AttrValue("from"))
	}
	c.OnIQ.Store(&fn)
}

func iqError(iq *stanza.Element, typ, cond string) *stanza.Element {
	r := stanza.NewElement(stanza.NSClient, "iq", "type", "error", "id", iq.AttrValue("id"), "to", iq.AttrValue("from"))
	e := stanza.NewElement(stanza.NSClient, "error", "type", typ)
	e.Append(stanza.NewElement(stanza.NSStanzaError, cond))
	return r.Append(e)
}

func waitPublish(t *testing.T, c *stack.Client, within time.Duration) *stanza.Element {
	t.Helper()
	select {
	case iq := <-c.IQs:
		if iq.Child("http://jabber.org/protocol/pubsub", "pubsub") == nil {
			t.Fatalf("not a publish: %s", iq)
		}
		return iq
	case <-time.After(within):
		t.Fatalf("no XEP-0357 publish within %s", within)
		return nil
	}
}

func xep0357Setup[P prosodytest.Version | server](t *testing.T, p P, opts stack.Options) (s *stack.Stack, pusher, romeo *stack.Client) {
	t.Helper()
	s = startStack(t, p, opts)
	domain := s.Server.Domain()
	pusher = login(t, s, "pusher", "svc", true)
	romeo = login(t, s, "romeo", "orchard", true)
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", strings.ReplaceAll(xep0357EnableXML, "%s", pusher.Session.LocalAddr().String())); resp.AttrValue("type") != "result" {
		t.Fatalf("XEP-0357 enable: %s", resp)
	}
	// The same account also registers a Push 2.0 device.
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, "push2-device")); resp.AttrValue("type") != "result" {
		t.Fatalf("push2 enable: %s", resp)
	}
	juliet.Close()
	time.Sleep(300 * time.Millisecond)
	return s, pusher, romeo
}

// TestXEP0357Client: an XEP-0357 registration through the bridge produces a
// pubsub publish at the app server, from the user's bare JID, with the
// summary form and the publish-options, hiding body and sender by default.
// A Push 2.0 registration of the same account gets its own notification.
func TestXEP0357Client(t *testing.T) { eachServer(t, testXEP0357Client) }

func testXEP0357Client(t *testing.T, p server) {
	s, pusher, romeo := xep0357Setup(t, p, stack.Options{})
	domain := s.Server.Domain()
	appServer(pusher, func(*stanza.Element) *stanza.Element { return nil })
	send(t, romeo, chat("juliet@"+domain, "l1", "Secret words"))
	pub := waitPublish(t, pusher, 15*time.Second)
	x := pub.String()
	for _, want := range []string{`from="juliet@` + domain + `"`, `node="node-1"`, `urn:xmpp:push:summary`, `<field var="message-count"><value>1</value></field>`, `<value>New Message!</value>`, `<value>app-server-secret</value>`} {
		if !strings.Contains(x, want) {
			t.Errorf("publish lacks %s:\n%s", want, x)
		}
	}
	for _, not := range []string{"Secret words", "romeo@", "last-message-sender"} {
		if strings.Contains(x, not) {
			t.Errorf("publish reveals %q by default:\n%s", not, x)
		}
	}
	n := waitNotification(t, pusher, 15*time.Second)
	if n.Child(stanza.NSPush2, "notification").ChildText(stanza.NSPush2, "client") != "push2-device" {
		t.Errorf("push2 notification: %s", n)
	}
	// The app server's result counts as delivered at once.
	waitFor(t, 10*time.Second, func() bool {
		m, _ := s.Admin("/metrics")
		return strings.Contains(m, `push2_outbox_total{event="delivered"} 1`)
	})

	// The ping API (mod_cloud_notify's cloud-notify-ping): all of the
	// account's registrations get a push now, without a stanza.
	out, err := s.AdminPost("/ping?account=juliet@" + domain)
	if err != nil || !strings.Contains(out, "xep0357:") {
		t.Fatalf("ping: %s %v", out, err)
	}
	waitPublish(t, pusher, 10*time.Second)
	waitNotification(t, pusher, 10*time.Second)
	if out, err := s.AdminPost("/ping?account=not-a-jid@@"); err == nil {
		t.Errorf("ping of a bad account: %s", out)
	}
}

// TestXEP0357WithBodyAndSender: the operator's options reveal them.
func TestXEP0357WithBodyAndSender(t *testing.T) { eachServer(t, testXEP0357WithBodyAndSender) }

func testXEP0357WithBodyAndSender(t *testing.T, p server) {
	s, pusher, romeo := xep0357Setup(t, p, stack.Options{Push2dConfig: "\n[legacy]\nwith_body = true\nwith_sender = true\n" /* the old name of [xep0357], still accepted */})
	domain := s.Server.Domain()
	appServer(pusher, func(*stanza.Element) *stanza.Element { return nil })
	send(t, romeo, chat("juliet@"+domain, "l2", "Wherefore art thou?"))
	x := waitPublish(t, pusher, 15*time.Second).String()
	for _, want := range []string{`<field var="last-message-body"><value>Wherefore art thou?</value></field>`, `<field var="last-message-sender"><value>` + romeo.Session.LocalAddr().String() + `</value></field>`} {
		if !strings.Contains(x, want) {
			t.Errorf("publish lacks %s:\n%s", want, x)
		}
	}
}

// TestXEP0357CancelDisables: the app server's cancel errors count towards
// disabling the XEP-0357 registration; the Push 2.0 one of the same
// account is unaffected.
func TestXEP0357CancelDisables(t *testing.T) { eachServer(t, testXEP0357CancelDisables) }

func testXEP0357CancelDisables(t *testing.T, p server) {
	s, pusher, romeo := xep0357Setup(t, p, stack.Options{Push2dConfig: "\n[delivery]\nmax_errors = 2\n"})
	domain := s.Server.Domain()
	appServer(pusher, func(iq *stanza.Element) *stanza.Element { return iqError(iq, "cancel", "item-not-found") })
	for i, body := range []string{"one", "two"} {
		send(t, romeo, chat("juliet@"+domain, "lc"+body, body))
		waitPublish(t, pusher, 15*time.Second)
		waitNotification(t, pusher, 15*time.Second)
		if i == 0 {
			select {
			case iq := <-pusher.IQs:
				t.Fatalf("a cancel error was retried: %s", iq)
			case <-time.After(time.Second):
			}
		}
	}
	waitFor(t, 10*time.Second, func() bool {
		d, _ := s.Admin("/disabled?account=juliet@" + domain)
		return strings.Contains(d, "xep0357:"+pusher.Session.LocalAddr().String()) && strings.Contains(d, "item-not-found")
	})
	regs, _ := s.Admin("/registrations?account=juliet@" + domain)
	if strings.Contains(regs, "xep0357:") || !strings.Contains(regs, "urn:xmpp:push2:match:important") {
		t.Errorf("registrations after the XEP-0357 one was disabled: %s", regs)
	}
	send(t, romeo, chat("juliet@"+domain, "lc3", "three"))
	waitNotification(t, pusher, 15*time.Second)
	select {
	case iq := <-pusher.IQs:
		t.Errorf("publish after disable: %s", iq)
	case <-time.After(2 * time.Second):
	}
}
