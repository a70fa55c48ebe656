package engine

import (
	"context"

	"github.com/push2/push2/engine/stanza"
)

// Registrations of push protocols other than Push 2.0 (XEP-0357 is the one
// push2 ships, package profiles/xep0357) reach the engine through one hook:
// the EnableParser send profile registered under the namespace of their
// <enable/> and <disable/>. What it returns is an ordinary Registration, so
// matching, dedupe, the outbox and error accounting are shared.

// enableParser returns the EnableParser for namespace ns, if one is
// registered.
func enableParser(reg *Registry, ns string) (EnableParser, bool) {
	sp, ok := reg.Send(ns)
	if !ok {
		return nil, false
	}
	ep, ok := sp.(EnableParser)
	return ep, ok
}

func notServed(el *stanza.Element) *stanza.Error {
	return stanza.FeatureNotImplemented("<%s xmlns='%s'/> is not a registration protocol this server serves (Push 2.0: <enable xmlns='%s'/>)", el.Name.Local, el.Name.Space, stanza.NSPush2)
}

// parseForeignEnable is ParseEnable for an <enable/> outside urn:xmpp:push2:0.
func parseForeignEnable(ctx context.Context, reg *Registry, lim Limits, account string, enable *stanza.Element) (*Registration, error) {
	acct, err := NormalizeJID(account)
	if err != nil || acct.Localpart() == "" {
		return nil, stanza.BadRequest("the account is not a valid bare JID")
	}
	ep, ok := enableParser(reg, enable.Name.Space)
	if !ok || enable.Name.Local != "enable" {
		return nil, notServed(enable)
	}
	r, err := ep.ParseEnable(ctx, acct.Bare().String(), enable, lim)
	if err != nil {
		return nil, provisionError(ctx, err, "<enable/>")
	}
	// The store keys and re-parses by these: the account is not the
	// parser's to change, and what it keeps of the element (r.Enable, if
	// it trimmed it) must be an <enable/> it parses again.
	r.Account = acct.Bare().String()
	if r.Enable == nil || !r.Enable.Is(enable.Name.Space, "enable") {
		r.Enable = enable
	}
	if r.ID == "" || len(r.Matches) == 0 {
		return nil, stanza.InternalServerError("the %s registration is incomplete", enable.Name.Space)
	}
	if err := checkStoredSize(lim, r.Enable); err != nil {
		return nil, err
	}
	return r, nil
}

// DisableForeign handles a <disable/> in the namespace of an EnableParser
// (XEP-0357's <disable xmlns='urn:xmpp:push:0' jid=… [node=…]/>): it removes
// the account's registrations the parser selects and returns how many. A
// namespace no parser serves is refused with feature-not-implemented.
func (e *Engine) DisableForeign(ctx context.Context, account string, disable *stanza.Element) (int, error) {
	ep, ok := enableParser(e.registry, disable.Name.Space)
	if !ok || disable.Name.Local != "disable" {
		return 0, notServed(disable)
	}
	selects, err := ep.ParseDisable(disable)
	if err != nil {
		return 0, AsStanzaError(err)
	}
	regs, err := e.Registrations(ctx, account)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range regs {
		if !selects(r) {
			continue
		}
		if _, err := e.Disable(ctx, r.Account, r.ID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
