package bridgeproto

import (
	"context"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// TestAccountChanges (issue 13, Build 2): the bridge's <account/> IQ
// suspends the account's registrations (disabled: kept, no push), lifts
// the suspension (enabled) and removes them (deleted), each answered with
// a result once applied; malformed changes and accounts of other domains
// are refused with a condition.
func TestAccountChanges(t *testing.T) {
	h := newHarness(t)
	h.enable(t, "phone")
	h.runOutbox(t)
	change := func(state string) *stanza.Element {
		t.Helper()
		return h.answer(t, iqFrom(domain, "set", AccountChange{Account: account, State: state}.Element()))
	}
	event := func(id string) {
		t.Helper()
		ev := &Event{ID: id, Account: account, Trigger: engine.TriggerOffline, Stanza: stanza.MustParse(chatXML)}
		ev.Stanza.SetAttr("id", id)
		h.svc.Handle(wireCopy(Message(domain, component, ev.Element())))
		h.svc.Wait()
	}

	if a := change(AccountDisabled); a.AttrValue("type") != "result" {
		t.Fatalf("disabled: %s", a)
	}
	regs, err := h.eng.Registrations(context.Background(), account)
	if err != nil || len(regs) != 1 || !regs[0].Suspended {
		t.Fatalf("after disabled: %+v %v, want the registration kept, suspended", regs, err)
	}
	event("s1")
	for _, m := range h.wire.take() {
		if m.Child(NS, KindPush) != nil {
			t.Errorf("push for a disabled account: %s", m)
		}
	}
	h.obs.mu.Lock()
	suspended := h.obs.outcomes[string(engine.OutcomeSuspended)]
	h.obs.mu.Unlock()
	if suspended != 1 {
		t.Errorf("%d suspended outcomes, want 1", suspended)
	}

	if a := change(AccountEnabled); a.AttrValue("type") != "result" {
		t.Fatalf("enabled: %s", a)
	}
	event("s2")
	if pushes, _ := h.waitPushes(t, 1); len(pushes) != 1 {
		t.Errorf("enabled again: pushes %v", pushes)
	}

	if a := change(AccountDeleted); a.AttrValue("type") != "result" {
		t.Fatalf("deleted: %s", a)
	}
	if regs := h.registrations(t); len(regs) != 0 {
		t.Errorf("after deleted: registrations %v", regs)
	}

	for name, tc := range map[string]struct {
		el   *stanza.Element
		cond stanza.Condition
	}{
		"unknown state":  {AccountChange{Account: account, State: "gone"}.Element(), stanza.CondBadRequest},
		"no account":     {AccountChange{State: AccountDeleted}.Element(), stanza.CondBadRequest},
		"another domain": {AccountChange{Account: "juliet@elsewhere.example", State: AccountDeleted}.Element(), stanza.CondNotAllowed},
	} {
		a := h.answer(t, iqFrom(domain, "set", tc.el))
		e := a.Child(stanza.NSClient, "error")
		if a.AttrValue("type") != "error" || e == nil || e.Child(stanza.NSStanzaError, string(tc.cond)) == nil || e.ChildText(stanza.NSStanzaError, "text") == "" {
			t.Errorf("%s: %s, want %s with a text", name, a, tc.cond)
		}
	}
}
