package engine_test

import (
	"context"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// fakeProtocol is a push protocol of its own (urn:example:push) served
// through the engine's one hook for foreign registrations: a send profile
// that is also an EnableParser. Its <enable id=…/> names the registration;
// its matches use the built-in all / notify-only pair.
type fakeProtocol struct{ noMatches bool }

const nsFake = "urn:example:push"

func (fakeProtocol) ID() string                                              { return nsFake }
func (fakeProtocol) Provision(context.Context, *stanza.Element) (any, error) { return nil, nil }
func (fakeProtocol) Send(context.Context, *engine.SendInput) ([]*stanza.Element, error) {
	return nil, nil
}

func (p fakeProtocol) ParseEnable(_ context.Context, account string, enable *stanza.Element, lim engine.Limits) (*engine.Registration, error) {
	id := enable.AttrValue("id")
	if id == "" {
		return nil, stanza.BadRequest("no id")
	}
	r := &engine.Registration{Account: "someone-else@example.net", ID: "fake:" + id, Service: "push.example.net", Client: id}
	if !p.noMatches {
		send := stanza.NewElement("urn:xmpp:push2:send:notify-only:0", "send")
		r.Matches = []*engine.Match{{Profile: "urn:xmpp:push2:match:all", Element: stanza.NewElement(stanza.NSPush2, "match"), Send: send, SendNS: send.Name.Space}}
	}
	return r, nil
}

func (fakeProtocol) ParseDisable(disable *stanza.Element) (func(*engine.Registration) bool, error) {
	id := disable.AttrValue("id")
	return func(r *engine.Registration) bool { return r.ID == "fake:"+id }, nil
}

// TestForeignProtocolHook: the hook is generic — any EnableParser send
// profile gets the <enable/> and <disable/> of its namespace, the engine
// keeps the account it was called for, and registrations the parser left
// without matches are refused.
func TestForeignProtocolHook(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "r", stanza.MustParse(`<enable xmlns="urn:example:push" id="a"/>`)); err == nil || !strings.Contains(err.Error(), "feature-not-implemented") {
		t.Fatalf("before the parser is registered: %v", err)
	}
	if err := e.Registry().Register(engine.ProfileSet{Send: []engine.SendProfile{fakeProtocol{}}}); err != nil {
		t.Fatal(err)
	}
	r, _, err := e.Enable(ctx, account, "r", stanza.MustParse(`<enable xmlns="urn:example:push" id="a"/>`))
	if err != nil || r.ID != "fake:a" || r.Account != account {
		t.Fatalf("enable: %+v %v", r, err)
	}
	if _, _, err := e.Enable(ctx, account, "r", stanza.MustParse(`<enable xmlns="urn:example:push"/>`)); err == nil || !strings.Contains(err.Error(), "bad-request: no id") {
		t.Errorf("the parser's error: %v", err)
	}
	if _, _, err := e.Enable(ctx, account, "r", stanza.MustParse(`<register xmlns="urn:example:push" id="a"/>`)); err == nil || !strings.Contains(err.Error(), "feature-not-implemented") {
		t.Errorf("not an <enable/>: %v", err)
	}
	if res, got := evaluateOne(t, e, msgBody, engine.Context{}); !got.push || res.Notifications[0].Reg.ID != "fake:a" {
		t.Errorf("the foreign registration was not pushed: %+v", res.Outcomes)
	}
	if n, err := e.DisableForeign(ctx, account, stanza.MustParse(`<disable xmlns="urn:example:push" id="b"/>`)); err != nil || n != 0 {
		t.Errorf("disable another id: %d %v", n, err)
	}
	if n, err := e.DisableForeign(ctx, account, stanza.MustParse(`<disable xmlns="urn:example:push" id="a"/>`)); err != nil || n != 1 {
		t.Errorf("disable: %d %v", n, err)
	}
	if _, err := e.DisableForeign(ctx, account, stanza.MustParse(`<disable xmlns="urn:example:other"/>`)); err == nil || !strings.Contains(err.Error(), "feature-not-implemented") {
		t.Errorf("disable in an unserved namespace: %v", err)
	}
	if err := e.Registry().Register(engine.ProfileSet{Send: []engine.SendProfile{fakeProtocol{noMatches: true}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Enable(ctx, account, "r", stanza.MustParse(`<enable xmlns="urn:example:push" id="a"/>`)); err == nil || !strings.Contains(err.Error(), "internal-server-error") {
		t.Errorf("a registration without matches: %v", err)
	}
}
