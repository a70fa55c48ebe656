package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles/xep0357"
)

func xep0357Engine(t *testing.T, opts xep0357.Options) *engine.Engine {
	t.Helper()
	e, _, _ := newEngine(t, engine.Config{})
	if err := e.Registry().Register(xep0357.Set(opts)); err != nil {
		t.Fatal(err)
	}
	return e
}

const xep0357Enable = `<enable xmlns="urn:xmpp:push:0" jid="push-5.client.example" node="yxs32uqsflafdk3iuqo">
  <x xmlns="jabber:x:data" type="submit">
    <field var="FORM_TYPE"><value>http://jabber.org/protocol/pubsub#publish-options</value></field>
    <field var="secret"><value>eruio234vzxc2kla-91</value></field>
  </x>
</enable>`

func TestXEP0357Enable(t *testing.T) {
	e := xep0357Engine(t, xep0357.Options{})
	r, _, err := e.Enable(context.Background(), account, "ignored-resource", stanza.MustParse(xep0357Enable))
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != xep0357.ID("push-5.client.example", "yxs32uqsflafdk3iuqo") || r.Service != "push-5.client.example" || r.Client != "yxs32uqsflafdk3iuqo" {
		t.Errorf("registration: %+v", r)
	}
	for _, tc := range []struct {
		xml  string
		cond stanza.Condition
		text string
	}{
		{`<enable xmlns="urn:xmpp:push:0" node="n"/>`, "bad-request", "jid"},
		{`<enable xmlns="urn:xmpp:push:0" jid="@@" node="n"/>`, "bad-request", "jid"},
		{`<enable xmlns="urn:xmpp:push:0" jid="juliet@capulet.lit" node="n"/>`, "bad-request", "account itself"},
		{`<enable xmlns="urn:xmpp:push:0" jid="p.example" node="n"><x xmlns="jabber:x:data" type="form"/></enable>`, "bad-request", "submit"},
		{`<enable xmlns="urn:xmpp:push:0" jid="p.example" node="n"><x xmlns="jabber:x:data" type="submit"><field var="FORM_TYPE"><value>urn:other</value></field></x></enable>`, "bad-request", "FORM_TYPE"},
	} {
		_, _, err := e.Enable(context.Background(), account, "r", stanza.MustParse(tc.xml))
		se, ok := err.(*stanza.Error)
		if !ok || se.Condition != tc.cond || !strings.Contains(se.Text, tc.text) {
			t.Errorf("%s: %v", tc.xml, err)
		}
	}
	// Without the XEP-0357 profile pair registered, XEP-0357 enables are not supported.
	plain, _, _ := newEngine(t, engine.Config{})
	if _, _, err := plain.Enable(context.Background(), account, "r", stanza.MustParse(xep0357Enable)); err == nil || !strings.Contains(err.Error(), "feature-not-implemented") {
		t.Errorf("XEP-0357 enable without the XEP-0357 profile pair: %v", err)
	}
}

func TestXEP0357Publish(t *testing.T) {
	empty := ""
	for _, tc := range []struct {
		name       string
		opts       xep0357.Options
		stanza     string
		has, hasnt []string
	}{
		{"private by default", xep0357.Options{}, msgBody,
			[]string{`<field var="FORM_TYPE"><value>urn:xmpp:push:summary</value></field>`, `<field var="message-count"><value>1</value></field>`, `<field var="last-message-body"><value>New Message!</value></field>`, `<publish node="yxs32uqsflafdk3iuqo">`, `<field var="secret"><value>eruio234vzxc2kla-91</value></field>`, `type="set"`, `from="juliet@capulet.lit"`, `to="push-5.client.example"`},
			[]string{"Art thou", "romeo@", "last-message-sender"}},
		{"with body and sender", xep0357.Options{WithBody: true, WithSender: true}, msgBody,
			[]string{`<value>Art thou not Romeo?</value>`, `<field var="last-message-sender"><value>romeo@montague.lit/orchard</value></field>`},
			[]string{"New Message!"}},
		{"no important body", xep0357.Options{ImportantBody: &empty}, msgBody,
			[]string{`urn:xmpp:push:summary`}, []string{"last-message-body"}},
		{"encrypted: summary text, never the ciphertext", xep0357.Options{WithBody: true}, msgOMEMO,
			[]string{`<value>New Message!</value>`}, []string{"AAAA"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := xep0357Engine(t, tc.opts)
			e.Enable(context.Background(), account, "r", stanza.MustParse(xep0357Enable))
			res, _ := evaluateOne(t, e, tc.stanza, engine.Context{})
			if len(res.Notifications) != 1 {
				t.Fatalf("outcomes %+v", res.Outcomes)
			}
			s := res.Notifications[0].Stanza.String()
			for _, want := range tc.has {
				if !strings.Contains(s, want) {
					t.Errorf("publish lacks %s:\n%s", want, s)
				}
			}
			for _, not := range tc.hasnt {
				if strings.Contains(s, not) {
					t.Errorf("publish contains %s:\n%s", not, s)
				}
			}
		})
	}
	// Unimportant stanzas are not pushed to XEP-0357 registrations.
	e := xep0357Engine(t, xep0357.Options{})
	e.Enable(context.Background(), account, "r", stanza.MustParse(xep0357Enable))
	if _, got := evaluateOne(t, e, msgChatState, engine.Context{}); got.push {
		t.Error("chat state pushed to a XEP-0357 registration")
	}
}

// TestXEP0357AndPush2Together: one account with both kinds of registration;
// each gets its own kind of notification, disables do not cross.
func TestXEP0357AndPush2Together(t *testing.T) {
	e := xep0357Engine(t, xep0357.Options{})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	e.Enable(ctx, account, "phone", stanza.MustParse(xep0357Enable))
	e.Enable(ctx, account, "phone", stanza.MustParse(strings.Replace(xep0357Enable, `node="yxs32uqsflafdk3iuqo"`, `node="second"`, 1)))
	res, _ := evaluateOne(t, e, msgBody, engine.Context{})
	kinds := map[string]int{}
	for _, n := range res.Notifications {
		kinds[n.Stanza.Name.Local]++
	}
	if kinds["message"] != 1 || kinds["iq"] != 2 {
		t.Fatalf("notifications by kind: %v", kinds)
	}
	// Disable one node, then the whole app server; push2 stays.
	if n, err := e.DisableForeign(ctx, account, stanza.MustParse(`<disable xmlns="urn:xmpp:push:0" jid="push-5.client.example" node="second"/>`)); err != nil || n != 1 {
		t.Fatalf("disable node: %d %v", n, err)
	}
	if n, _ := e.DisableForeign(ctx, account, stanza.MustParse(`<disable xmlns="urn:xmpp:push:0" jid="push-5.client.example"/>`)); n != 1 {
		t.Fatalf("disable jid removed %d", n)
	}
	regs, _ := e.Registrations(context.Background(), account)
	if len(regs) != 1 || regs[0].ID != "phone" {
		t.Errorf("left: %+v", regs)
	}
	if _, err := e.DisableForeign(ctx, account, stanza.MustParse(`<disable xmlns="urn:xmpp:push:0"/>`)); err == nil {
		t.Error("disable without jid accepted")
	}
	// Features list the XEP-0357 namespace once.
	f := strings.Join(e.Registry().Features(), " ")
	if strings.Count(f, "urn:xmpp:push:0") != 1 {
		t.Errorf("features: %s", f)
	}
}

func TestPing(t *testing.T) {
	e := xep0357Engine(t, xep0357.Options{})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("important", `<filter jid="romeo@montague.lit"/>`))))
	e.Enable(ctx, account, "tablet", stanza.MustParse(enableXML(matchXML("all"))))
	e.Enable(ctx, account, "x", stanza.MustParse(xep0357Enable))
	all, err := e.Ping(ctx, account, nil)
	if err != nil || len(all) != 3 {
		t.Fatalf("ping all: %d %v", len(all), err)
	}
	some, _ := e.Ping(ctx, account, []string{"tablet"})
	if len(some) != 1 || some[0].Reg.ID != "tablet" {
		t.Fatalf("ping some: %+v", some)
	}
	// Two pings are two notifications (no dedupe).
	again, _ := e.Ping(ctx, account, []string{"tablet"})
	if again[0].ID == some[0].ID {
		t.Error("ping ids repeat")
	}
	if e.Outbox().Len() != 5 {
		t.Errorf("outbox holds %d, want 5", e.Outbox().Len())
	}
}
