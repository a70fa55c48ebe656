package bridgeproto

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// wire serializes el and parses it again, as the component stream does.
func wire(t *testing.T, el *stanza.Element) *stanza.Element {
	t.Helper()
	back, err := stanza.Parse(el.Marshal())
	if err != nil {
		t.Fatalf("%s does not parse again: %v", el, err)
	}
	return back
}

const chatXML = `<message xmlns="jabber:client" from="romeo@example.org/orchard" to="juliet@example.org" type="chat" id="m1"><body>hi</body></message>`

// TestCodecRoundTrip: every message kind survives rendering, the wire and
// parsing unchanged.
func TestCodecRoundTrip(t *testing.T) {
	push2Enable := stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>p.example</service></enable>`)
	xepEnable := stanza.MustParse(`<enable xmlns="urn:xmpp:push:0" jid="app.example" node="n1"/>`)
	xepDisable := stanza.MustParse(`<disable xmlns="urn:xmpp:push:0" jid="app.example" node="n1"/>`)
	push2Disable := stanza.MustParse(`<disable xmlns="urn:xmpp:push2:0"/>`)
	notification := stanza.MustParse(`<message xmlns="jabber:client" to="pusher@p.example" id="9b2c6f4e-1a7d-4e0b-8f3a-52d1c0e6a9b7"><notification xmlns="urn:xmpp:push2:0"><client>c</client></notification></message>`)
	for name, tc := range map[string]struct {
		value any
		el    func(any) *stanza.Element
		parse func(*stanza.Element) (any, error)
	}{
		"enable push2": {&Enable{Account: "juliet@example.org", Registration: "balcony", Request: push2Enable},
			func(v any) *stanza.Element { return v.(*Enable).Element() },
			func(el *stanza.Element) (any, error) { return ParseEnable(el) }},
		"enable XEP-0357": {&Enable{Account: "juliet@example.org", Registration: "balcony", Request: xepEnable},
			func(v any) *stanza.Element { return v.(*Enable).Element() },
			func(el *stanza.Element) (any, error) { return ParseEnable(el) }},
		"disable push2": {&Disable{Account: "juliet@example.org", Registration: "balcony", Request: push2Disable},
			func(v any) *stanza.Element { return v.(*Disable).Element() },
			func(el *stanza.Element) (any, error) { return ParseDisable(el) }},
		"disable XEP-0357": {&Disable{Account: "juliet@example.org", Registration: "balcony", Request: xepDisable},
			func(v any) *stanza.Element { return v.(*Disable).Element() },
			func(el *stanza.Element) (any, error) { return ParseDisable(el) }},
		"registered": {Registered{ID: "app.example"},
			func(v any) *stanza.Element { return v.(Registered).Element() },
			func(el *stanza.Element) (any, error) { return ParseRegistered(el) }},
		"features": {Features{Vars: []string{"urn:xmpp:push2:0", "urn:xmpp:push2:match:all"}},
			func(v any) *stanza.Element { return v.(Features).Element() },
			func(el *stanza.Element) (any, error) { return ParseFeatures(el) }},
		"event, every attribute": {&Event{ID: "E1", Account: "juliet@example.org", Trigger: engine.TriggerArchived, ArchiveID: "A1", ArchiveBy: "juliet@example.org", Nick: "jul", Live: []string{"laptop"}, Only: []string{"phone", "tablet"}, Stanza: stanza.MustParse(chatXML)},
			func(v any) *stanza.Element { return v.(*Event).Element() },
			func(el *stanza.Element) (any, error) { return ParseEvent(el) }},
		"features with limits": {Features{Vars: []string{"urn:xmpp:push2:0"}, Limits: &Limits{Bytes: 1000, Elements: 10, Depth: 4, Attrs: 40, ElementAttrs: 8, NameBytes: 16}},
			func(v any) *stanza.Element { return v.(Features).Element() },
			func(el *stanza.Element) (any, error) { return ParseFeatures(el) }},
		"event, truncated": {&Event{ID: "E3", Account: "juliet@example.org", Trigger: engine.TriggerOffline, Truncated: "more than 4096 elements", Stanza: stanza.MustParse(chatXML)},
			func(v any) *stanza.Element { return v.(*Event).Element() },
			func(el *stanza.Element) (any, error) { return ParseEvent(el) }},
		"event, minimal": {&Event{ID: "E2", Account: "juliet@example.org", Trigger: engine.TriggerOffline, Stanza: stanza.MustParse(chatXML)},
			func(v any) *stanza.Element { return v.(*Event).Element() },
			func(el *stanza.Element) (any, error) { return ParseEvent(el) }},
		"ack": {Ack{ID: "E1"},
			func(v any) *stanza.Element { return v.(Ack).Element() },
			func(el *stanza.Element) (any, error) { return ParseAck(el) }},
		"ack with error": {Ack{ID: "E1", Error: "bad-request"},
			func(v any) *stanza.Element { return v.(Ack).Element() },
			func(el *stanza.Element) (any, error) { return ParseAck(el) }},
		"push": {&Push{Account: "juliet@example.org", Registration: "balcony", Notification: notification},
			func(v any) *stanza.Element { return v.(*Push).Element() },
			func(el *stanza.Element) (any, error) { return ParsePush(el) }},
		"delivery error": {&DeliveryError{ID: "9b2c6f4e", From: "pusher@p.example/svc", Type: "wait", Condition: "resource-constraint", Text: "slow down"},
			func(v any) *stanza.Element { return v.(*DeliveryError).Element() },
			func(el *stanza.Element) (any, error) { return ParseDeliveryError(el) }},
		"delivered": {Delivered{ID: "9b2c6f4e", From: "app.example"},
			func(v any) *stanza.Element { return v.(Delivered).Element() },
			func(el *stanza.Element) (any, error) { return ParseDelivered(el) }},
		"activity": {Activity{Account: "juliet@example.org", Registration: "laptop"},
			func(v any) *stanza.Element { return v.(Activity).Element() },
			func(el *stanza.Element) (any, error) { return ParseActivity(el) }},
	} {
		t.Run(name, func(t *testing.T) {
			el := wire(t, tc.el(tc.value))
			if el.Name.Space != NS {
				t.Fatalf("rendered in %q", el.Name.Space)
			}
			got, err := tc.parse(el)
			if err != nil {
				t.Fatalf("parse %s: %v", el, err)
			}
			// Elements compare by their serialization.
			if g, w := render(got), render(tc.value); g != w {
				t.Errorf("round trip:\n got %s\nwant %s", g, w)
			}
		})
	}
}

// render serializes a codec value (its element's XML) for comparison.
func render(v any) string {
	if el, ok := v.(interface{ Element() *stanza.Element }); ok {
		return el.Element().String()
	}
	return reflect.ValueOf(v).String()
}

// TestCodecErrors: every malformed message is refused with bad-request and a
// text that names what is wrong.
func TestCodecErrors(t *testing.T) {
	ev := func(attrs, body string) *stanza.Element {
		return stanza.MustParse(`<event xmlns="urn:push2:bridge:1" id="E1" account="juliet@example.org" ` + attrs + `>` + body + `</event>`)
	}
	for _, tc := range []struct {
		name  string
		parse func() error
		text  string
	}{
		{"enable: missing", func() error { _, err := ParseEnable(nil); return err }, "missing <enable"},
		{"enable: other version", func() error {
			_, err := ParseEnable(stanza.MustParse(`<enable xmlns="urn:push2:bridge:2"/>`))
			return err
		}, "expected <enable xmlns='urn:push2:bridge:1'/>"},
		{"enable: no client request", func() error {
			_, err := ParseEnable(stanza.MustParse(`<enable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="r"><register xmlns="urn:xmpp:push2:0"/></enable>`))
			return err
		}, "missing <enable xmlns='urn:xmpp:push2:0'/>"},
		{"disable: wrong element", func() error {
			_, err := ParseDisable(stanza.MustParse(`<enable xmlns="urn:push2:bridge:1"/>`))
			return err
		}, "expected <disable"},
		{"event: unknown trigger", func() error {
			_, err := ParseEvent(ev(`trigger="whenever"`, chatXML))
			return err
		}, "known trigger"},
		{"limits: not a number", func() error {
			_, err := ParseFeatures(stanza.MustParse(`<features xmlns="urn:push2:bridge:1"><limits max-bytes="lots" max-elements="1" max-depth="1" max-attrs="1" max-element-attrs="1" max-name-bytes="1"/></features>`))
			return err
		}, "max-bytes as a positive integer"},
		{"limits: missing", func() error {
			_, err := ParseLimits(stanza.MustParse(`<limits xmlns="urn:push2:bridge:1" max-bytes="1" max-elements="1" max-depth="0"/>`))
			return err
		}, "max-depth as a positive integer"},
		{"event: no trigger", func() error { _, err := ParseEvent(ev(``, chatXML)); return err }, "known trigger"},
		{"event: no stanza", func() error {
			_, err := ParseEvent(ev(`trigger="offline"`, `<live xmlns="urn:push2:bridge:1" id="x"/>`))
			return err
		}, "a stanza"},
		{"event: stanza not jabber:client", func() error {
			_, err := ParseEvent(ev(`trigger="offline"`, `<message xmlns="jabber:server"/>`))
			return err
		}, "a stanza"},
		{"event: unknown kind", func() error {
			_, err := ParseEvent(stanza.MustParse(`<evnt xmlns="urn:push2:bridge:1"/>`))
			return err
		}, "expected <event"},
		{"ack: no id", func() error { _, err := ParseAck(stanza.MustParse(`<ack xmlns="urn:push2:bridge:1"/>`)); return err }, "needs the id attribute"},
		{"registered: no id", func() error {
			_, err := ParseRegistered(stanza.MustParse(`<registered xmlns="urn:push2:bridge:1"/>`))
			return err
		}, "needs the id attribute"},
		{"push: empty", func() error { _, err := ParsePush(stanza.MustParse(`<push xmlns="urn:push2:bridge:1"/>`)); return err }, "exactly one stanza"},
		{"push: two stanzas", func() error {
			_, err := ParsePush(stanza.MustParse(`<push xmlns="urn:push2:bridge:1"><message xmlns="jabber:client"/><message xmlns="jabber:client"/></push>`))
			return err
		}, "exactly one stanza"},
		{"delivery-error: no from", func() error {
			_, err := ParseDeliveryError(stanza.MustParse(`<delivery-error xmlns="urn:push2:bridge:1" id="x" type="cancel" condition="gone"/>`))
			return err
		}, "an id and a from"},
		{"delivery-error: no id", func() error {
			_, err := ParseDeliveryError(stanza.MustParse(`<delivery-error xmlns="urn:push2:bridge:1" from="p.example"/>`))
			return err
		}, "an id and a from"},
		{"delivered: no from", func() error {
			_, err := ParseDelivered(stanza.MustParse(`<delivered xmlns="urn:push2:bridge:1" id="x"/>`))
			return err
		}, "an id and a from"},
		{"activity: no registration", func() error {
			_, err := ParseActivity(stanza.MustParse(`<activity xmlns="urn:push2:bridge:1" account="juliet@example.org"/>`))
			return err
		}, "an account and a registration"},
		{"features: wrong namespace", func() error {
			_, err := ParseFeatures(stanza.MustParse(`<features xmlns="urn:xmpp:push2:0"/>`))
			return err
		}, "expected <features"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.parse()
			var se *stanza.Error
			if !errors.As(err, &se) || se.Condition != stanza.CondBadRequest || se.Type != stanza.Modify {
				t.Fatalf("error %v, want modify/bad-request", err)
			}
			if !strings.Contains(se.Text, tc.text) {
				t.Errorf("text %q lacks %q", se.Text, tc.text)
			}
		})
	}
}

func TestDeliveryErrorDefaultType(t *testing.T) {
	de, err := ParseDeliveryError(stanza.MustParse(`<delivery-error xmlns="urn:push2:bridge:1" id="x" from="p.example" condition="gone"/>`))
	if err != nil || de.Type != "cancel" || de.Condition != "gone" {
		t.Errorf("%+v %v", de, err)
	}
}

// TestTargets: the bridge's <only/> and <live/> lists against the
// account's registrations.
func TestTargets(t *testing.T) {
	all := func() ([]string, error) { return []string{"phone", "laptop", "tablet"}, nil }
	for _, tc := range []struct {
		only, live []string
		want       string
	}{
		{nil, nil, "<all>"},
		{nil, []string{"laptop"}, "phone,tablet"},
		{[]string{"phone"}, nil, "phone"},
		{[]string{"phone", "laptop"}, []string{"laptop"}, "phone"},
		{nil, []string{"phone", "laptop", "tablet"}, ""},
	} {
		got, err := (&Event{Only: tc.only, Live: tc.live}).Targets(all)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Join(got, ",")
		if got == nil {
			s = "<all>"
		}
		if s != tc.want {
			t.Errorf("targets(%v, %v) = %q, want %q", tc.only, tc.live, s, tc.want)
		}
	}
	boom := errors.New("store down")
	if _, err := (&Event{Live: []string{"x"}}).Targets(func() ([]string, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("store error: %v", err)
	}
	if _, err := (&Event{Only: []string{"x"}}).Targets(func() ([]string, error) { return nil, boom }); err != nil {
		t.Errorf("<only/> needs no store: %v", err)
	}
}

func TestNewID(t *testing.T) {
	hex128 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := NewID()
		if !hex128.MatchString(id) || seen[id] {
			t.Fatalf("id %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
	m := Message("push2.example.org", "example.org", Ack{ID: "E1"}.Element())
	if m.AttrValue("from") != "push2.example.org" || m.AttrValue("to") != "example.org" || !hex128.MatchString(m.AttrValue("id")) || m.Child(NS, KindAck) == nil {
		t.Errorf("message %s", m)
	}
}

func TestOtherVersion(t *testing.T) {
	for ns, want := range map[string]bool{NS: false, "urn:push2:bridge:2": true, "urn:push2:bridge:0": true, "urn:xmpp:push2:0": false, "": false} {
		if OtherVersion(ns) != want {
			t.Errorf("OtherVersion(%q) = %v", ns, !want)
		}
	}
}

// FuzzParseEvent: no input makes the event parser panic, and what it
// accepts renders to an event that parses to the same.
func FuzzParseEvent(f *testing.F) {
	f.Add(`<event xmlns="urn:push2:bridge:1" id="E1" account="juliet@example.org" trigger="offline"><live id="a"/>` + chatXML + `</event>`)
	f.Add(`<event xmlns="urn:push2:bridge:1" trigger="groupchat"><only/><message xmlns="jabber:client"/></event>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := stanza.Parse([]byte(s))
		if err != nil {
			return
		}
		ev, err := ParseEvent(el)
		if err != nil {
			return
		}
		again, err := ParseEvent(wire(t, ev.Element()))
		if err != nil || again.Element().String() != ev.Element().String() {
			t.Fatalf("%s: round trip %v", s, err)
		}
	})
}
