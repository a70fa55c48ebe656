package bridgeproto

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/xep0357"
)

// This file is the bridge's view of push2d: a test plays the bridge,
// sending what docs/bridge-protocol.md says a bridge sends, and checks what
// comes back on the stream. A bridge for another server can be checked the
// same way, against the same Service.

const (
	component = "push2.example.org"
	domain    = "example.org"
	account   = "juliet@example.org"
	service   = "pusher@p.example"
)

const enableXML = `<enable xmlns="urn:xmpp:push2:0"><service>` + service + `</service><client>c</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`

// stream records what the service writes, as the component stream would
// carry it (serialized and parsed again).
type stream struct {
	mu   sync.Mutex
	out  []*stanza.Element
	down bool
	raw  int // stanzas written with SendRaw
	more chan struct{}
}

func (s *stream) Send(_ context.Context, st *stanza.Element) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return ErrNotConnected
	}
	back, err := stanza.Parse(st.Marshal())
	if err != nil {
		return err
	}
	s.out = append(s.out, back)
	select {
	case s.more <- struct{}{}:
	default:
	}
	return nil
}

// SendRaw parses b as the server reads the component stream: in the
// stream's default namespace, one stanza.
func (s *stream) SendRaw(_ context.Context, b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return ErrNotConnected
	}
	s.raw++
	back, err := readStreamStanza(b)
	if err != nil {
		return err
	}
	s.out = append(s.out, back)
	select {
	case s.more <- struct{}{}:
	default:
	}
	return nil
}

// readStreamStanza reads b, one stanza, as written into a component
// stream (jabber:component:accept the default namespace), strictly.
func readStreamStanza(b []byte) (*stanza.Element, error) {
	d := xml.NewDecoder(strings.NewReader(`<stream:stream xmlns="jabber:component:accept" xmlns:stream="http://etherx.jabber.org/streams">` + string(b) + `</stream:stream>`))
	if _, err := d.Token(); err != nil {
		return nil, err
	}
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	start, ok := tok.(xml.StartElement)
	if !ok {
		return nil, fmt.Errorf("not a stanza: %v", tok)
	}
	el, err := stanza.ReadElement(start, d)
	if err != nil {
		return nil, err
	}
	if tok, err := d.Token(); err != nil {
		return nil, err
	} else if end, ok := tok.(xml.EndElement); !ok || end.Name.Local != "stream" {
		return nil, fmt.Errorf("more than one stanza: %v", tok)
	}
	return el, nil
}

// take returns and forgets what was sent so far.
func (s *stream) take() []*stanza.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.out
	s.out = nil
	return out
}

// counts is an Observer that counts.
type counts struct {
	mu                                 sync.Mutex
	refused, disabled, evaluated       int
	events                             int
	enabled, outcomes, errors, ignored map[string]int
}

func newCounts() *counts {
	return &counts{enabled: map[string]int{}, outcomes: map[string]int{}, errors: map[string]int{}, ignored: map[string]int{}}
}

func (c *counts) do(f func())                  { c.mu.Lock(); defer c.mu.Unlock(); f() }
func (c *counts) Refused()                     { c.do(func() { c.refused++ }) }
func (c *counts) Event()                       { c.do(func() { c.events++ }) }
func (c *counts) Enabled(r string)             { c.do(func() { c.enabled[r]++ }) }
func (c *counts) Disabled()                    { c.do(func() { c.disabled++ }) }
func (c *counts) Evaluated(time.Duration)      { c.do(func() { c.evaluated++ }) }
func (c *counts) Outcome(o engine.OutcomeCode) { c.do(func() { c.outcomes[string(o)]++ }) }
func (c *counts) DeliveryError(typ, cond string) {
	c.do(func() { c.errors[typ+"/"+cond]++ })
}
func (c *counts) IgnoredReport(r string) { c.do(func() { c.ignored[r]++ }) }

type harness struct {
	svc  *Service
	eng  *engine.Engine
	wire *stream
	obs  *counts
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, func(*Config) {}) }

func newHarnessWith(t *testing.T, configure func(*Config)) *harness {
	t.Helper()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.BuiltinWith(profiles.Options{XEP0357: &xep0357.Options{}})); err != nil {
		t.Fatal(err)
	}
	eng := engine.New(memstore.New(), reg, engine.Config{Retry: engine.RetryPolicy{MaxErrors: 3}})
	h := &harness{eng: eng, wire: &stream{more: make(chan struct{}, 1)}, obs: newCounts()}
	cfg := Config{JID: component, Domains: []string{domain, "example.net"}, Engine: eng, Sender: h.wire,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Observer: h.obs}
	configure(&cfg)
	h.svc = New(cfg)
	return h
}

// do hands st to the service as the stream would and waits until it is
// handled, and returns what the service sent meanwhile.
func (h *harness) do(st *stanza.Element) []*stanza.Element {
	h.svc.Handle(wireCopy(st))
	h.svc.Wait()
	return h.wire.take()
}

func wireCopy(st *stanza.Element) *stanza.Element {
	back, err := stanza.Parse(st.Marshal())
	if err != nil {
		panic(err)
	}
	return back
}

func iqFrom(from, typ string, payload *stanza.Element) *stanza.Element {
	iq := stanza.NewElement(stanza.NSClient, "iq", "from", from, "to", component, "type", typ, "id", "q1")
	if payload != nil {
		iq.Append(payload)
	}
	return iq
}

// the only answer, which must be an IQ result or error to q1.
func (h *harness) answer(t *testing.T, iq *stanza.Element) *stanza.Element {
	t.Helper()
	out := h.do(iq)
	if len(out) != 1 || out[0].Name.Local != "iq" || out[0].AttrValue("id") != "q1" || out[0].AttrValue("from") != component || out[0].AttrValue("to") != iq.AttrValue("from") {
		t.Fatalf("answer to %s: %v", iq, out)
	}
	return out[0]
}

func wantError(t *testing.T, answer *stanza.Element, typ, cond, text string) {
	t.Helper()
	e := answer.Child(stanza.NSClient, "error")
	if answer.AttrValue("type") != "error" || e == nil || e.AttrValue("type") != typ || e.Child(stanza.NSStanzaError, cond) == nil {
		t.Fatalf("answer %s, want %s/%s", answer, typ, cond)
	}
	if !strings.Contains(e.ChildText(stanza.NSStanzaError, "text"), text) {
		t.Errorf("text %q lacks %q", e.ChildText(stanza.NSStanzaError, "text"), text)
	}
}

func (h *harness) enable(t *testing.T, reg string) {
	t.Helper()
	a := h.answer(t, iqFrom(domain, "set", (&Enable{Account: account, Registration: reg, Request: stanza.MustParse(enableXML)}).Element()))
	if a.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", a)
	}
}

func (h *harness) registrations(t *testing.T) []string {
	t.Helper()
	regs, err := h.eng.Registrations(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range regs {
		ids = append(ids, r.ID)
	}
	return ids
}

// TestOnlyConfiguredDomains: stanzas from anything but the configured
// server domains are refused and counted; accounts must be on them too.
func TestOnlyConfiguredDomains(t *testing.T) {
	h := newHarness(t)
	req := (&Enable{Account: account, Registration: "r", Request: stanza.MustParse(enableXML)}).Element()
	for _, from := range []string{"evil.example", "user@example.org", "example.org/res", ""} {
		wantError(t, h.answer(t, iqFrom(from, "set", req)), "cancel", "not-allowed", "only the configured XMPP server domains")
		// Messages are dropped without an answer.
		ev := &Event{ID: "E1", Account: account, Trigger: engine.TriggerOffline, Stanza: stanza.MustParse(chatXML)}
		if out := h.do(Message(from, component, ev.Element())); len(out) != 0 {
			t.Errorf("event from %q answered: %v", from, out)
		}
	}
	if h.obs.refused != 8 {
		t.Errorf("refused = %v, want 8", h.obs.refused)
	}
	if regs := h.registrations(t); len(regs) != 0 {
		t.Errorf("a refused stanza registered %v", regs)
	}
	// From the right domain, but for an account elsewhere.
	other := (&Enable{Account: "mallory@evil.example", Registration: "r", Request: stanza.MustParse(enableXML)}).Element()
	wantError(t, h.answer(t, iqFrom(domain, "set", other)), "cancel", "not-allowed", "not on a configured server domain")
	if a := h.answer(t, iqFrom(domain, "set", req)); a.AttrValue("type") != "result" {
		t.Errorf("enable for the configured domain: %s", a)
	}
	if h.obs.enabled["ok"] != 1 {
		t.Errorf("enables: %v", h.obs.enabled)
	}
}

// TestEnableDisable: a Push 2.0 and an XEP-0357 registration come and go
// through the IQs; the result names the registration.
func TestEnableDisable(t *testing.T) {
	h := newHarness(t)
	a := h.answer(t, iqFrom(domain, "set", (&Enable{Account: account, Registration: "balcony", Request: stanza.MustParse(enableXML)}).Element()))
	r, err := ParseRegistered(a.Child(NS, KindRegistered))
	if a.AttrValue("type") != "result" || err != nil || r.ID != "balcony" {
		t.Fatalf("enable answered %s (%v)", a, err)
	}
	xep := stanza.MustParse(`<enable xmlns="urn:xmpp:push:0" jid="app.example" node="n1"/>`)
	a = h.answer(t, iqFrom(domain, "set", (&Enable{Account: account, Registration: "balcony", Request: xep}).Element()))
	r, err = ParseRegistered(a.Child(NS, KindRegistered))
	if a.AttrValue("type") != "result" || err != nil || r.ID != xep0357.ID("app.example", "n1") {
		t.Fatalf("XEP-0357 enable answered %s (%v): the registration is the app server's, not the session's", a, err)
	}
	if regs := h.registrations(t); len(regs) != 2 {
		t.Fatalf("registrations %v", regs)
	}
	a = h.answer(t, iqFrom(domain, "set", (&Disable{Account: account, Registration: "balcony", Request: stanza.MustParse(`<disable xmlns="urn:xmpp:push:0" jid="app.example"/>`)}).Element()))
	if a.AttrValue("type") != "result" || len(a.Children) != 0 {
		t.Fatalf("XEP-0357 disable answered %s", a)
	}
	if regs := h.registrations(t); len(regs) != 1 || regs[0] != "balcony" {
		t.Fatalf("after the XEP-0357 disable: %v", regs)
	}
	a = h.answer(t, iqFrom(domain, "set", (&Disable{Account: account, Registration: "balcony"}).Element()))
	if a.AttrValue("type") != "result" {
		t.Fatalf("disable answered %s", a)
	}
	if regs := h.registrations(t); len(regs) != 0 {
		t.Fatalf("after the disable: %v", regs)
	}
	if h.obs.enabled["ok"] != 2 || h.obs.disabled != 2 {
		t.Errorf("observed %+v", h.obs)
	}
}

// TestIQErrors: every request push2d cannot serve gets the condition and
// text the client should see, and nothing is stored.
func TestIQErrors(t *testing.T) {
	h := newHarness(t)
	mk := func(s string) *stanza.Element { return stanza.MustParse(s) }
	for _, tc := range []struct {
		name           string
		iq             *stanza.Element
		typ, cond, txt string
	}{
		{"no child", iqFrom(domain, "set", nil), "modify", "bad-request", "exactly one child"},
		{"two children", iqFrom(domain, "set", mk(`<enable xmlns="urn:push2:bridge:1"/>`)).Append(mk(`<disable xmlns="urn:push2:bridge:1"/>`)), "modify", "bad-request", "exactly one child"},
		{"enable without the client's enable", iqFrom(domain, "set", mk(`<enable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="r"/>`)), "modify", "bad-request", "missing <enable xmlns='urn:xmpp:push2:0'/>"},
		{"enable without an account", iqFrom(domain, "set", (&Enable{Registration: "r", Request: mk(enableXML)}).Element()), "modify", "bad-request", "not a valid bare JID"},
		{"enable for a domain JID", iqFrom(domain, "set", (&Enable{Account: domain, Registration: "r", Request: mk(enableXML)}).Element()), "modify", "bad-request", "not a valid bare JID"},
		{"enable the engine refuses", iqFrom(domain, "set", (&Enable{Account: account, Registration: "r", Request: mk(`<enable xmlns="urn:xmpp:push2:0"><client>c</client></enable>`)}).Element()), "modify", "bad-request", "service"},
		{"enable without a registration id", iqFrom(domain, "set", (&Enable{Account: account, Request: mk(enableXML)}).Element()), "modify", "bad-request", ""},
		{"enable of an unknown push protocol", iqFrom(domain, "set", (&Enable{Account: account, Registration: "r", Request: mk(`<enable xmlns="urn:xmpp:push2:1"/>`)}).Element()), "cancel", "feature-not-implemented", "urn:xmpp:push2:1"},
		{"disable for another domain", iqFrom(domain, "set", (&Disable{Account: "mallory@evil.example", Registration: "r"}).Element()), "cancel", "not-allowed", "not on a configured server domain"},
		{"enable as a get", iqFrom(domain, "get", (&Enable{Account: account, Registration: "r", Request: mk(enableXML)}).Element()), "cancel", "feature-not-implemented", "unknown request <enable/> (type get)"},
		{"unknown request", iqFrom(domain, "set", mk(`<reboot xmlns="urn:push2:bridge:1"/>`)), "cancel", "feature-not-implemented", "unknown request <reboot/>"},
		{"another protocol version", iqFrom(domain, "set", mk(`<enable xmlns="urn:push2:bridge:2"/>`)), "cancel", "feature-not-implemented", "this push2d speaks urn:push2:bridge:1"},
		{"another namespace", iqFrom(domain, "get", mk(`<query xmlns="jabber:iq:version"/>`)), "cancel", "service-unavailable", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.answer(t, tc.iq), tc.typ, tc.cond, tc.txt)
		})
	}
	if regs := h.registrations(t); len(regs) != 0 {
		t.Errorf("stored %v", regs)
	}
	// Results and errors need no answer.
	for _, typ := range []string{"result", "error"} {
		if out := h.do(iqFrom(domain, typ, nil)); len(out) != 0 {
			t.Errorf("IQ %s answered: %v", typ, out)
		}
	}
}

// TestDiscoAndFeatures: disco#info names the protocol; the feature list
// comes on request and is announced to every domain.
func TestDiscoAndFeatures(t *testing.T) {
	h := newHarness(t)
	a := h.answer(t, iqFrom(domain, "get", stanza.NewElement(stanza.NSDiscoInfo, "query")))
	q := a.Child(stanza.NSDiscoInfo, "query")
	if q == nil || !strings.Contains(q.String(), `var="`+NS+`"`) || q.Child(stanza.NSDiscoInfo, "identity").AttrValue("category") != "component" {
		t.Errorf("disco#info: %s", a)
	}
	want := h.eng.Registry().Features()
	if len(want) == 0 {
		t.Fatal("no features to check")
	}
	a = h.answer(t, iqFrom(domain, "get", Features{}.Element()))
	f, err := ParseFeatures(a.Child(NS, KindFeatures))
	if err != nil || strings.Join(f.Vars, " ") != strings.Join(want, " ") {
		t.Errorf("features answered %s (%v), want %v", a, err, want)
	}
	h.svc.AnnounceFeatures(context.Background())
	out := h.wire.take()
	if len(out) != 2 || out[0].AttrValue("to") != domain || out[1].AttrValue("to") != "example.net" {
		t.Fatalf("announced %v", out)
	}
	for _, m := range out {
		f, err := ParseFeatures(m.Child(NS, KindFeatures))
		if m.AttrValue("from") != component || err != nil || strings.Join(f.Vars, " ") != strings.Join(want, " ") {
			t.Errorf("announcement %s", m)
		}
	}
	h.wire.down = true
	h.svc.AnnounceFeatures(context.Background()) // not connected: nothing, no panic
	h.wire.down = false
	if out := h.wire.take(); len(out) != 0 {
		t.Errorf("sent while down: %v", out)
	}
}

// runOutbox delivers through the service until the test ends.
func (h *harness) runOutbox(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.eng.Outbox().Run(ctx, h.svc.Deliver); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitPushes waits for n pushes on the stream and returns them (and
// everything else sent meanwhile).
func (h *harness) waitPushes(t *testing.T, n int) (pushes []*Push, other []*stanza.Element) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for len(pushes) < n {
		for _, m := range h.wire.take() {
			if c := m.Child(NS, KindPush); c != nil {
				p, err := ParsePush(c)
				if err != nil || m.AttrValue("from") != component || m.AttrValue("to") != domain {
					t.Fatalf("push %s: %v", m, err)
				}
				pushes = append(pushes, p)
			} else {
				other = append(other, m)
			}
		}
		if len(pushes) >= n {
			break
		}
		select {
		case <-h.wire.more:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d pushes, want %d", len(pushes), n)
		}
	}
	return pushes, other
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func ackOf(t *testing.T, out []*stanza.Element) Ack {
	t.Helper()
	if len(out) != 1 || out[0].AttrValue("from") != component {
		t.Fatalf("want one ack, got %v", out)
	}
	a, err := ParseAck(out[0].Child(NS, KindAck))
	if err != nil {
		t.Fatalf("not an ack: %s", out[0])
	}
	return a
}

// TestEvent: an event is evaluated, acked to the domain it came from, and
// its notification pushed through the bridge of the account's domain, with
// a fresh UUID as its id.
func TestEvent(t *testing.T) {
	h := newHarness(t)
	h.enable(t, "phone")
	h.enable(t, "laptop")
	h.enable(t, "tablet")
	ev := &Event{ID: "E1", Account: account, Trigger: engine.TriggerOffline, Live: []string{"laptop"}, Stanza: stanza.MustParse(chatXML)}
	out := h.do(Message(domain, component, ev.Element()))
	if a := ackOf(t, out); a.ID != "E1" || a.Error != "" || out[0].AttrValue("to") != domain {
		t.Fatalf("ack %+v in %s", a, out[0])
	}
	if h.obs.evaluated != 1 || h.obs.outcomes["pushed"] != 2 {
		t.Errorf("observed %+v", h.obs)
	}
	h.runOutbox(t)
	pushes, _ := h.waitPushes(t, 2)
	got := map[string]string{}
	for _, p := range pushes {
		n := p.Notification
		if p.Account != account || n.AttrValue("to") != service || n.Child(stanza.NSPush2, "notification") == nil || !uuidV4.MatchString(n.AttrValue("id")) {
			t.Errorf("push %s", p.Element())
		}
		got[p.Registration] = n.AttrValue("id")
	}
	if len(got) != 2 || got["phone"] == "" || got["tablet"] == "" || got["phone"] == got["tablet"] {
		t.Errorf("pushed %v: want phone and tablet (laptop is live), each with its own id", got)
	}
	// The same stanza again (a replay) is acked and pushes nothing more.
	out = h.do(Message(domain, component, ev.Element()))
	if a := ackOf(t, out); a.ID != "E1" || a.Error != "" {
		t.Errorf("replay acked %+v", a)
	}
	if h.obs.outcomes["duplicate"] != 2 {
		t.Errorf("outcomes %v", h.obs.outcomes)
	}
}

// TestEventErrors: a refused event is acked with the condition, so the
// bridge drops it instead of replaying it for ever; nothing is pushed.
func TestEventErrors(t *testing.T) {
	h := newHarness(t)
	h.enable(t, "phone")
	chat := stanza.MustParse(chatXML)
	for _, tc := range []struct {
		name string
		ev   *stanza.Element
		cond string
	}{
		{"unknown trigger", (&Event{ID: "E1", Account: account, Trigger: "whenever", Stanza: chat}).Element(), "bad-request"},
		{"no stanza", (&Event{ID: "E1", Account: account, Trigger: engine.TriggerOffline}).Element(), "bad-request"},
		{"no account", (&Event{ID: "E1", Trigger: engine.TriggerOffline, Stanza: chat}).Element(), "bad-request"},
		{"account not a JID", (&Event{ID: "E1", Account: "@@", Trigger: engine.TriggerOffline, Stanza: chat}).Element(), "bad-request"},
		{"account on another domain", (&Event{ID: "E1", Account: "mallory@evil.example", Trigger: engine.TriggerOffline, Stanza: chat}).Element(), "not-allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := h.do(Message(domain, component, tc.ev))
			if a := ackOf(t, out); a.ID != "E1" || a.Error != tc.cond || out[0].AttrValue("to") != domain {
				t.Errorf("ack %+v, want error %s", a, tc.cond)
			}
		})
	}
	// Without an id there is nothing to ack; the event is still served.
	out := h.do(Message(domain, component, (&Event{Account: account, Trigger: engine.TriggerOffline, Stanza: chat}).Element()))
	if len(out) != 0 || h.obs.outcomes["pushed"] != 1 {
		t.Errorf("event without an id: sent %v, outcomes %v", out, h.obs.outcomes)
	}
	if h.obs.evaluated != 1 {
		t.Errorf("evaluated %d, want only the last", h.obs.evaluated)
	}
}

// overLimits are client stanza bodies each over one of push2d's parse
// limits, all of which Prosody accepts from a client: issue 11 item 4's
// (more than 4,096 elements, deeper than 64, more than 256 KiB) and item
// 5's ~20,000 attributes on one element.
func overLimits() map[string]string {
	attrs := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, ` a%d=""`, i)
		}
		return b.String()
	}
	return map[string]string{
		"too deep":       strings.Repeat("<a>", stanza.MaxDepth+1) + strings.Repeat("</a>", stanza.MaxDepth+1),
		"too many":       strings.Repeat("<b/>", stanza.MaxElements+1),
		"too large":      "<body>" + strings.Repeat("x", stanza.MaxStanzaBytes+1) + "</body>",
		"20000 attrs":    "<x xmlns='urn:example:x'" + attrs(20000) + "/>",
		"too many attrs": strings.Repeat("<b"+attrs(200)+"/>", stanza.MaxAttrs/200+1),
	}
}

// handleDoc feeds doc to HandleXML as the component stream would (start
// element read, the rest of the tokens after it) and returns what was
// sent.
func (h *harness) handleDoc(t *testing.T, doc string) []*stanza.Element {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(doc))
	tok, err := d.Token()
	if err != nil {
		t.Fatal(err)
	}
	start := tok.(xml.StartElement)
	if err := h.svc.HandleXML(d, &start); err != nil {
		t.Errorf("the stream would end: %v", err)
	}
	h.svc.Wait()
	return h.wire.take()
}

// TestUnreadableStanza (issue 11 item 4): a stanza over the parse limits
// does not take the stream down and is still answered, from its outline:
// an event gets an ack with error="policy-violation" (so the bridge drops
// it instead of replaying it forever), an enable a policy-violation IQ
// error whose text names the limit (not a timeout). The next stanza is
// served.
func TestUnreadableStanza(t *testing.T) {
	h := newHarness(t)
	for name, body := range overLimits() {
		doc := `<message xmlns="jabber:client" from="example.org" to="push2.example.org" id="w1"><event xmlns="urn:push2:bridge:1" id="E1" account="juliet@example.org" trigger="offline"><message xmlns="jabber:client">` + body + `</message></event></message>`
		out := h.handleDoc(t, doc)
		if len(out) != 1 || out[0].AttrValue("to") != domain {
			t.Fatalf("%s: event answered with %v, want one ack", name, out)
		}
		a, err := ParseAck(out[0].Child(NS, KindAck))
		if err != nil || a.ID != "E1" || a.Error != string(stanza.CondPolicyViolation) {
			t.Errorf("%s: %s (%v), want <ack id='E1' error='policy-violation'/>", name, out[0], err)
		}

		for _, enable := range []string{
			`<enable xmlns="urn:xmpp:push2:0"><service>` + service + `</service><client>c</client>` + body + `</enable>`,
			`<enable xmlns="urn:xmpp:push:0" jid="app.example" node="n"><x xmlns="jabber:x:data">` + body + `</x></enable>`,
		} {
			doc := `<iq xmlns="jabber:client" from="example.org" to="push2.example.org" type="set" id="q1"><enable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="r">` + enable + `</enable></iq>`
			out := h.handleDoc(t, doc)
			if len(out) != 1 || out[0].AttrValue("type") != "error" || out[0].AttrValue("id") != "q1" || out[0].AttrValue("to") != domain {
				t.Fatalf("%s: enable answered with %v, want one IQ error", name, out)
			}
			e := out[0].Child(stanza.NSClient, "error")
			text := e.ChildText(stanza.NSStanzaError, "text")
			if e.AttrValue("type") != "modify" || e.Child(stanza.NSStanzaError, "policy-violation") == nil || !regexp.MustCompile(`over push2d's parse limits \((more|larger|nested) `).MatchString(text) {
				t.Errorf("%s: %s, want modify/policy-violation naming the limit", name, out[0])
			}
		}
	}
	if regs := h.registrations(t); len(regs) != 0 {
		t.Errorf("registrations stored: %v", regs)
	}

	// A duplicate attribute is not over a limit: bad-request.
	out := h.handleDoc(t, `<iq xmlns="jabber:client" from="example.org" to="push2.example.org" type="set" id="q1"><enable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="r"><enable xmlns="urn:xmpp:push2:0" a="1" a="2"/></enable></iq>`)
	if len(out) != 1 || out[0].Child(stanza.NSClient, "error").Child(stanza.NSStanzaError, "bad-request") == nil {
		t.Errorf("duplicate attribute: %v, want bad-request", out)
	}
	// Only the configured domains get an answer about what they sent.
	out = h.handleDoc(t, `<iq xmlns="jabber:client" from="evil.example" to="push2.example.org" type="set" id="q1"><enable xmlns="urn:push2:bridge:1" account="juliet@example.org" registration="r">`+overLimits()["too many"]+`</enable></iq>`)
	if len(out) != 1 || out[0].Child(stanza.NSClient, "error").Child(stanza.NSStanzaError, "not-allowed") == nil {
		t.Errorf("from another domain: %v, want not-allowed", out)
	}
	out = h.handleDoc(t, `<message xmlns="jabber:client" from="evil.example" to="push2.example.org"><event xmlns="urn:push2:bridge:1" id="E1" account="juliet@example.org" trigger="offline">`+overLimits()["too many"]+`</event></message>`)
	if len(out) != 0 {
		t.Errorf("event from another domain: answered %v", out)
	}

	a := h.answer(t, iqFrom(domain, "get", Features{}.Element()))
	if a.AttrValue("type") != "result" {
		t.Errorf("next stanza: %s", a)
	}
}

// TestFeaturesCarryLimits: push2d's <features/> (announced and as an IQ
// result) carry the limits it reads with, so that the bridge applies them.
func TestFeaturesCarryLimits(t *testing.T) {
	h := newHarness(t)
	a := h.answer(t, iqFrom(domain, "get", Features{}.Element()))
	f, err := ParseFeatures(a.Child(NS, KindFeatures))
	if err != nil || f.Limits == nil || *f.Limits != DefaultLimits() {
		t.Fatalf("features %s: %+v %v, want the limits %+v", a, f.Limits, err, DefaultLimits())
	}
	if l := DefaultLimits(); l.Bytes != 256<<10 || l.Elements != 4096 || l.Depth != 64 || l.Attrs != 16384 || l.ElementAttrs != 256 || l.NameBytes != 256 {
		t.Errorf("DefaultLimits %+v differ from engine/stanza's", l)
	}
}

// TestTruncatedEvent: an event the bridge cut to the stanza's outline
// (Truncated set) is evaluated like any other: a registration whose profile
// pushes for a message with a body gets a push.
func TestTruncatedEvent(t *testing.T) {
	h := newHarness(t)
	h.enable(t, "phone")
	h.runOutbox(t)
	ev := &Event{ID: "E1", Account: account, Trigger: engine.TriggerOffline, Truncated: "more than 4096 elements",
		Stanza: stanza.MustParse(`<message xmlns="jabber:client" from="romeo@example.org/orchard" to="juliet@example.org" type="chat" id="big1"><body>` + strings.Repeat("x", 1024) + `</body></message>`)}
	h.svc.Handle(wireCopy(Message(domain, component, ev.Element())))
	pushes, other := h.waitPushes(t, 1)
	if len(pushes) != 1 || pushes[0].Registration != "phone" {
		t.Errorf("pushes %v", pushes)
	}
	for _, m := range other {
		if a := m.Child(NS, KindAck); a != nil && a.AttrValue("error") != "" {
			t.Errorf("truncated event refused: %s", m)
		}
	}
}

// TestDeliveryReports (issue 11, Security 1): a delivery error or a
// positive report counts only from the service the notification went to.
// Forged ones, as many as would disable the registration and more, from
// other users, other domains or the service's server, change nothing.
func TestDeliveryReports(t *testing.T) {
	h := newHarness(t)
	h.enable(t, "phone")
	h.runOutbox(t)
	push := func(id string) *stanza.Element {
		t.Helper()
		ev := &Event{ID: id, Account: account, Trigger: engine.TriggerOffline, Stanza: stanza.MustParse(strings.Replace(chatXML, `id="m1"`, `id="`+id+`"`, 1))}
		// The outbox runs: the push may come before or after the ack.
		h.svc.Handle(wireCopy(Message(domain, component, ev.Element())))
		h.svc.Wait()
		pushes, other := h.waitPushes(t, 1)
		if a := ackOf(t, other); a.ID != id || a.Error != "" {
			t.Fatalf("ack %+v", a)
		}
		return pushes[0].Notification
	}
	report := func(el *stanza.Element) {
		t.Helper()
		if out := h.do(Message(domain, component, el)); len(out) != 0 {
			t.Fatalf("a report was answered: %v", out)
		}
	}
	for i, n := range []*stanza.Element{push("m1"), push("m2"), push("m3"), push("m4")} {
		id := n.AttrValue("id")
		for _, from := range []string{"mallory@evil.example/x", "romeo@example.org/orchard", "p.example", "pusher@p.example.evil", "juliet@example.org", "example.org"} {
			for j := 0; j < 16; j++ {
				report((&DeliveryError{ID: id, From: from, Type: "cancel", Condition: "item-not-found"}).Element())
			}
			report(Delivered{ID: id, From: from}.Element())
		}
		report(stanza.NewElement(NS, KindDeliveryError, "id", id, "type", "cancel", "condition", "item-not-found")) // no from
		report(stanza.NewElement(NS, KindDelivered, "id", id))                                                      // no from
		if h.obs.ignored["wrong-sender"] != (i+1)*6*17 || h.obs.ignored["malformed"] != (i+1)*2 || len(h.obs.errors) != 0 {
			t.Fatalf("after notification %d: ignored %v, counted %v", i+1, h.obs.ignored, h.obs.errors)
		}
	}
	if regs := h.registrations(t); len(regs) != 1 {
		t.Fatalf("registration gone after forged errors: %v", regs)
	}
	if n := h.eng.Outbox().Len(); n != 4 {
		t.Fatalf("outbox holds %d, want the 4 notifications waiting for their window", n)
	}
	// Unknown ids, even from the service, do not count.
	report((&DeliveryError{ID: "00000000-0000-4000-8000-000000000000", From: service, Type: "cancel", Condition: "gone"}).Element())
	if h.obs.ignored["unknown"] != 1 {
		t.Errorf("ignored %v", h.obs.ignored)
	}
	// The service itself is heard, from any of its resources.
	n := push("m5")
	report(Delivered{ID: n.AttrValue("id"), From: service + "/r1"}.Element())
	if got := h.eng.Outbox().Len(); got != 4 {
		t.Errorf("a confirmed notification is still waiting (%d)", got)
	}
	n = push("m6")
	report((&DeliveryError{ID: n.AttrValue("id"), From: service + "/r2", Type: "cancel", Condition: "item-not-found"}).Element())
	if h.obs.errors["cancel/item-not-found"] != 1 {
		t.Errorf("the service's own error: %v", h.obs.errors)
	}
}

// TestActivity: activity reports feed <grace/>; a malformed one is dropped.
func TestActivity(t *testing.T) {
	h := newHarness(t)
	grace := strings.Replace(enableXML, `<send `, `<grace>60</grace><send `, 1)
	a := h.answer(t, iqFrom(domain, "set", (&Enable{Account: account, Registration: "phone", Request: stanza.MustParse(grace)}).Element()))
	if a.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", a)
	}
	if out := h.do(Message(domain, component, stanza.NewElement(NS, KindActivity, "account", account))); len(out) != 0 {
		t.Fatalf("malformed activity answered: %v", out)
	}
	ev := &Event{ID: "E1", Account: account, Trigger: engine.TriggerOffline, Stanza: stanza.MustParse(chatXML)}
	ackOf(t, h.do(Message(domain, component, ev.Element())))
	if h.obs.outcomes["pushed"] != 1 {
		t.Fatalf("without activity: %v", h.obs.outcomes)
	}
	if out := h.do(Message(domain, component, Activity{Account: account, Registration: "laptop"}.Element())); len(out) != 0 {
		t.Fatalf("activity answered: %v", out)
	}
	ev = &Event{ID: "E2", Account: account, Trigger: engine.TriggerOffline, Stanza: stanza.MustParse(strings.Replace(chatXML, "m1", "m2", 1))}
	ackOf(t, h.do(Message(domain, component, ev.Element())))
	if h.obs.outcomes["grace"] != 1 {
		t.Errorf("after activity on another session: %v", h.obs.outcomes)
	}
}

// TestOtherMessages: bounces of push2d's own messages and unknown kinds are
// dropped without an answer.
func TestOtherMessages(t *testing.T) {
	h := newHarness(t)
	bounce := Message(domain, component, Ack{ID: "x"}.Element())
	bounce.SetAttr("type", "error")
	for _, m := range []*stanza.Element{
		bounce,
		Message(domain, component, stanza.NewElement(NS, "reboot")),
		Message(domain, component, stanza.NewElement("urn:push2:bridge:2", KindEvent)),
		stanza.NewElement(stanza.NSClient, "presence", "from", domain),
	} {
		if out := h.do(m); len(out) != 0 {
			t.Errorf("%s answered: %v", m, out)
		}
	}
	if h.obs.evaluated != 0 {
		t.Errorf("evaluated %d", h.obs.evaluated)
	}
}

// TestDeliver: the outbox's sender wraps the stored notification; what it
// cannot send it says.
func TestDeliver(t *testing.T) {
	h := newHarness(t)
	n := `<message xmlns="jabber:client" to="pusher@p.example" id="9b2c6f4e-1a7d-4e0b-8f3a-52d1c0e6a9b7"><notification xmlns="urn:xmpp:push2:0"/></message>`
	if err := h.svc.Deliver(context.Background(), engine.OutboxEntry{Account: "juliet@example.net", Reg: "phone", Stanza: n}); err != nil {
		t.Fatal(err)
	}
	out := h.wire.take()
	if len(out) != 1 || out[0].AttrValue("to") != "example.net" {
		t.Fatalf("sent %v", out)
	}
	p, err := ParsePush(out[0].Child(NS, KindPush))
	if err != nil || p.Account != "juliet@example.net" || p.Registration != "phone" || p.Notification.String() != stanza.MustParse(n).String() {
		t.Errorf("push %v %v", p, err)
	}
	if h.wire.raw != 1 {
		t.Errorf("%d stanzas written raw, want the notification", h.wire.raw)
	}
	// A stored notification not as the engine writes them (single quotes,
	// an entity Marshal does not write) is parsed and encoded anew.
	other := `<message xmlns='jabber:client' to='pusher@p.example' id='x'><notification xmlns='urn:xmpp:push2:0'><body>&#x263A; &lt;3</body></notification></message>`
	if err := h.svc.Deliver(context.Background(), engine.OutboxEntry{Account: "juliet@example.net", Reg: "a&\"<", Stanza: other}); err != nil {
		t.Fatal(err)
	}
	out = h.wire.take()
	if len(out) != 1 || h.wire.raw != 1 {
		t.Fatalf("sent %v (%d raw)", out, h.wire.raw)
	}
	if p, err := ParsePush(out[0].Child(NS, KindPush)); err != nil || p.Registration != "a&\"<" || p.Notification.String() != stanza.MustParse(other).String() {
		t.Errorf("push %v %v", p, err)
	}
	for _, bad := range []string{"<message", `<message xmlns="jabber:client"><a></b></message>`, `<message xmlns="jabber:client" a="1" a="2"/>`, `<message xmlns="jabber:client"/><message xmlns="jabber:client"/>`, `<message xmlns="jabber:client">&bogus;</message>`} {
		if err := h.svc.Deliver(context.Background(), engine.OutboxEntry{Account: account, Stanza: bad}); !errors.Is(err, engine.ErrUndeliverable) {
			t.Errorf("bad stanza %q: %v, want engine.ErrUndeliverable", bad, err)
		}
	}
	if err := h.svc.Deliver(context.Background(), engine.OutboxEntry{Account: "@@", Stanza: n}); !errors.Is(err, engine.ErrUndeliverable) {
		t.Errorf("bad account: %v, want engine.ErrUndeliverable", err)
	}
	if err := h.svc.Deliver(context.Background(), engine.OutboxEntry{Account: account, Stanza: "<message"}); !errors.Is(err, engine.ErrUndeliverable) {
		t.Errorf("bad stanza: %v, want engine.ErrUndeliverable", err)
	}
	h.wire.down = true
	if err := h.svc.Deliver(context.Background(), engine.OutboxEntry{Account: account, Stanza: n}); !errors.Is(err, ErrNotConnected) {
		t.Errorf("while down: %v", err)
	}
	// Connected again, before the domain's bridge said whether it
	// confirms routing: this domain's notifications wait (and only they).
	h.wire.down = false
	h.svc.Connected()
	if err := h.svc.Deliver(context.Background(), engine.OutboxEntry{Account: account, Stanza: n}); !errors.Is(err, engine.ErrNotReady) {
		t.Errorf("before the bridge declared itself: %v, want engine.ErrNotReady", err)
	}
}
