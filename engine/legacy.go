package engine

import (
	"context"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// XEP-0357 (Push Notifications, urn:xmpp:push:0) clients are served by the
// same pipeline: their <enable/> becomes a Registration whose one match
// uses the compatibility profile pair registered under stanza.NSXEP0357 (package
// profiles, Legacy), so store, outbox, dedupe and error accounting are
// shared with Push 2.0 registrations.
const (
	legacyIDTag = "xep0357:"
)

// LegacyID is the registration id of an XEP-0357 registration: XEP-0357
// identifies a registration by its app server JID and node, not by session.
func LegacyID(jid, node string) string { return legacyIDTag + jid + "<" + node }

// IsLegacyID reports whether a registration id is an XEP-0357 one.
func IsLegacyID(id string) bool { return strings.HasPrefix(id, legacyIDTag) }

// parseLegacyEnable turns <enable xmlns='urn:xmpp:push:0' jid=… node=…> with
// its optional publish-options form into a Registration (XEP-0357 §5).
func parseLegacyEnable(ctx context.Context, reg *Registry, lim Limits, account string, enable *stanza.Element) (*Registration, error) {
	acct, err := NormalizeJID(account)
	if err != nil || acct.Localpart() == "" {
		return nil, badRequest("the account is not a valid bare JID")
	}
	acct = acct.Bare()
	raw, ok := enable.LookupAttr("jid")
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, badRequest("<enable/> needs the app server's 'jid'")
	}
	svc, err := NormalizeJID(raw)
	if err != nil {
		return nil, badRequest("<enable jid=…/> is not a valid JID")
	}
	if svc.Bare().Equal(acct) {
		return nil, badRequest("<enable jid=…/> must not be the account itself")
	}
	node := enable.AttrValue("node")
	if len(node) > lim.MaxClientBytes {
		return nil, badRequest("'node' is longer than %d bytes", lim.MaxClientBytes)
	}
	send := stanza.NewElement(stanza.NSXEP0357, "send")
	for _, c := range enable.Children {
		if !c.Is(stanza.NSDataForm, "x") {
			continue
		}
		if t := c.AttrValue("type"); t != "submit" {
			return nil, badRequest("the publish-options form must be of type 'submit'")
		}
		formType := ""
		for _, f := range c.ChildrenNamed(stanza.NSDataForm, "field") {
			if f.AttrValue("var") == "FORM_TYPE" {
				formType = f.ChildText(stanza.NSDataForm, "value")
			}
		}
		if formType != stanza.NSPubSubPublishOptions {
			return nil, badRequest("the form's FORM_TYPE must be http://jabber.org/protocol/pubsub#publish-options")
		}
		send.Append(c)
	}
	if send.Size() > lim.MaxSendBytes {
		return nil, badRequest("the publish-options form is larger than %d bytes", lim.MaxSendBytes)
	}
	mp, ok := reg.Match(stanza.NSXEP0357)
	sp, ok2 := reg.Send(stanza.NSXEP0357)
	if !ok || !ok2 {
		return nil, notImplemented("XEP-0357 push notifications are not enabled on this server")
	}
	match := stanza.NewElement(stanza.NSPush2, "match", "profile", stanza.NSXEP0357)
	match.Append(send)
	mprov, err := mp.Provision(ctx, match)
	if err != nil {
		return nil, provisionError(ctx, err, "<enable/>")
	}
	sprov, err := sp.Provision(ctx, send)
	if err != nil {
		return nil, provisionError(ctx, err, "<enable/>")
	}
	return &Registration{
		Account: acct.String(),
		ID:      LegacyID(svc.String(), node),
		Service: svc.String(),
		Client:  node,
		Matches: []*Match{{Profile: stanza.NSXEP0357, Element: match, Send: send, SendNS: stanza.NSXEP0357, MatchProvisioned: mprov, SendProvisioned: sprov}},
		Enable:  enable,
	}, nil
}

// DisableLegacy handles <disable xmlns='urn:xmpp:push:0' jid=… [node=…]/>:
// it removes the account's XEP-0357 registrations for that app server JID,
// all of them or only the one for node. It returns how many were removed.
func (e *Engine) DisableLegacy(ctx context.Context, account string, disable *stanza.Element) (int, error) {
	if !disable.Is(stanza.NSXEP0357, "disable") {
		return 0, badRequest("expected <disable xmlns='%s'/>", stanza.NSXEP0357)
	}
	raw := disable.AttrValue("jid")
	svc, err := NormalizeJID(raw)
	if err != nil || strings.TrimSpace(raw) == "" {
		return 0, badRequest("<disable/> needs a valid 'jid'")
	}
	regs, err := e.Registrations(ctx, account)
	if err != nil {
		return 0, err
	}
	node, byNode := disable.LookupAttr("node")
	n := 0
	for _, r := range regs {
		if !IsLegacyID(r.ID) || r.Service != svc.String() || (byNode && r.Client != node) {
			continue
		}
		if _, err := e.Disable(ctx, r.Account, r.ID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
