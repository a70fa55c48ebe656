package xep0357

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// BuildStanza builds the XEP-0357 §6 publish: an IQ from the user's bare
// JID to the app server, publishing a summary notification to the node,
// with the registration's publish-options.
func (p *Profile) BuildStanza(_ context.Context, in *engine.SendInput, r *engine.Registration, id string) (*stanza.Element, error) {
	f := in.Facts()
	form := stanza.NewElement(stanza.NSDataForm, "x", "type", "submit")
	field := func(name, value string) {
		fe := stanza.NewElement(stanza.NSDataForm, "field", "var", name)
		fe.Append(stanza.NewElement(stanza.NSDataForm, "value").WithText(value))
		form.Append(fe)
	}
	field("FORM_TYPE", stanza.NSPushSummary)
	field("message-count", "1")
	if p.opts.WithSender && f.From.String() != "" {
		field("last-message-sender", f.From.String())
	}
	switch {
	case p.opts.WithBody && f.HasBody:
		field("last-message-body", truncateUTF8(f.Body, maxBody))
	case f.Important() && p.opts.importantBody() != "":
		field("last-message-body", p.opts.importantBody())
	}
	if in.Decision.Priority == engine.PriorityHigh {
		field("last-message-priority", "high")
	}
	notif := stanza.NewElement(NS, "notification")
	notif.Append(form)
	publish := stanza.NewElement(stanza.NSPubSub, "publish", "node", r.Client)
	publish.Append(stanza.NewElement(stanza.NSPubSub, "item").Append(notif))
	pubsub := stanza.NewElement(stanza.NSPubSub, "pubsub")
	pubsub.Append(publish)
	if opts := in.Send.Child(stanza.NSDataForm, "x"); opts != nil {
		po := stanza.NewElement(stanza.NSPubSub, "publish-options")
		po.Append(opts.Clone())
		pubsub.Append(po)
	}
	iq := stanza.NewElement(stanza.NSClient, "iq", "type", "set", "to", r.Service, "from", r.Account, "id", id)
	iq.Append(pubsub)
	return iq, nil
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.TrimSpace(s) + "…"
}
