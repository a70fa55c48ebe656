package xep0357

import (
	"context"
	"strings"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// formPublishOptions is the FORM_TYPE of the publish-options form an
// <enable/> may carry (XEP-0357 §5, XEP-0060 §7.1.5).
const formPublishOptions = stanza.NSPubSubPublishOptions

// ParseEnable turns <enable xmlns='urn:xmpp:push:0' jid=… node=…> with its
// optional publish-options form (XEP-0357 §5 "Enabling Notifications") into
// a registration of account (a normalized bare JID): id ID(jid, node), the
// app server as service, the node as client, and one match on this profile
// pair whose <send/> holds the form. The engine calls it at enable time and
// again whenever it loads the registration from the store.
func (p *Profile) ParseEnable(ctx context.Context, account string, enable *stanza.Element, lim engine.Limits) (*engine.Registration, error) {
	if !enable.Is(NS, "enable") {
		return nil, badRequest("expected <enable xmlns='%s'/>", NS)
	}
	raw, ok := enable.LookupAttr("jid")
	if !ok || strings.TrimSpace(raw) == "" {
		return nil, badRequest("<enable/> needs the app server's 'jid'")
	}
	svc, err := engine.NormalizeJID(raw)
	if err != nil {
		return nil, badRequest("<enable jid=…/> is not a valid JID")
	}
	if svc.Bare().String() == account {
		return nil, badRequest("<enable jid=…/> must not be the account itself")
	}
	node := enable.AttrValue("node")
	if len(node) > lim.MaxClientBytes {
		return nil, badRequest("'node' is longer than %d bytes", lim.MaxClientBytes)
	}
	// What is stored: the attributes read here and the forms, not the
	// children XEP-0357 does not define.
	stored := stanza.NewElement(NS, "enable", "jid", raw)
	if n, ok := enable.LookupAttr("node"); ok {
		stored.SetAttr("node", n)
	}
	send := stanza.NewElement(NS, "send")
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
		if formType != formPublishOptions {
			return nil, badRequest("the form's FORM_TYPE must be %s", formPublishOptions)
		}
		send.Append(c)
		stored.Append(c)
	}
	if send.Size() > lim.MaxSendBytes {
		return nil, badRequest("the publish-options form is larger than %d bytes", lim.MaxSendBytes)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	match := stanza.NewElement(stanza.NSPush2, "match", "profile", NS)
	match.Append(send)
	return &engine.Registration{
		Account: account,
		ID:      ID(svc.String(), node),
		Service: svc.String(),
		Client:  node,
		Matches: []*engine.Match{{Profile: NS, Element: match, Send: send, SendNS: NS}},
		Enable:  stored,
	}, nil
}

// ParseDisable reads <disable xmlns='urn:xmpp:push:0' jid=… [node=…]/>
// (XEP-0357 §7 "Disabling Notifications"): it removes the account's XEP-0357
// registrations for that app server JID, all of them or only the one for
// node.
func (p *Profile) ParseDisable(disable *stanza.Element) (func(*engine.Registration) bool, error) {
	if !disable.Is(NS, "disable") {
		return nil, badRequest("expected <disable xmlns='%s'/>", NS)
	}
	raw := disable.AttrValue("jid")
	svc, err := engine.NormalizeJID(raw)
	if err != nil || strings.TrimSpace(raw) == "" {
		return nil, badRequest("<disable/> needs a valid 'jid'")
	}
	node, byNode := disable.LookupAttr("node")
	return func(r *engine.Registration) bool {
		return IsID(r.ID) && r.Service == svc.String() && (!byNode || r.Client == node)
	}, nil
}

func badRequest(format string, args ...any) error {
	return stanza.BadRequest(format, args...)
}
