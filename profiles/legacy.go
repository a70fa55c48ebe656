package profiles

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// XEP-0357 compatibility: a match and a send profile under
// urn:xmpp:push:0, so legacy clients (Conversations, Monal, Siskin…) are
// served by the same engine, store and outbox as Push 2.0 ones. The rules
// and options are those of mod_cloud_notify (its README and business rules):
// push what is important, publish a urn:xmpp:push:summary form, reveal the
// body and the sender only when the operator allows it.

const (
	maxLegacyBody  = 512 // bytes of body revealed when WithBody is set
	defaultSummary = "New Message!"
)

// LegacyOptions are mod_cloud_notify's privacy options.
type LegacyOptions struct {
	// WithBody sends the real message body (push_notification_with_body,
	// default off: the body would be exposed to the app server and the OS
	// vendor).
	WithBody bool
	// WithSender sends the real sender (push_notification_with_sender,
	// default off).
	WithSender bool
	// ImportantBody is the body sent for important stanzas when the real
	// one is not (push_notification_important_body). nil means the default
	// "New Message!"; an empty string sends no body.
	ImportantBody *string
}

func (o LegacyOptions) importantBody() string {
	if o.ImportantBody == nil {
		return defaultSummary
	}
	return *o.ImportantBody
}

// Legacy returns the XEP-0357 profile pair: one value that is both the match
// profile and the send profile for urn:xmpp:push:0.
func Legacy(opts LegacyOptions) engine.ProfileSet {
	l := &legacy{opts: opts}
	return engine.ProfileSet{Match: []engine.MatchProfile{l}, Send: []engine.SendProfile{l}}
}

type legacy struct{ opts LegacyOptions }

var (
	_ engine.MatchProfile  = (*legacy)(nil)
	_ engine.SendProfile   = (*legacy)(nil)
	_ engine.StanzaBuilder = (*legacy)(nil)
)

func (*legacy) ID() string { return stanza.NSXEP0357 }

// Provision accepts every <match/> and <send/>: the engine built both from
// the XEP-0357 <enable/>, which it has already checked.
func (*legacy) Provision(context.Context, *stanza.Element) (any, error) { return nil, nil }

// Match pushes important stanzas (see engine.Facts.Important), as
// mod_cloud_notify does.
func (*legacy) Match(_ context.Context, in *engine.MatchInput) (engine.Decision, error) {
	f := in.Facts()
	if !f.Important() {
		return engine.Decision{Reason: reasonNotImportant}, nil
	}
	return engine.Decision{Push: true, Priority: f.Priority(), VoIP: f.Call == engine.CallPropose, Reason: "important"}, nil
}

// Send is not used: BuildStanza builds the whole publish.
func (*legacy) Send(context.Context, *engine.SendInput) ([]*stanza.Element, error) {
	return nil, nil
}

// BuildStanza builds the XEP-0357 §6 publish: an IQ from the user's bare
// JID to the app server, publishing a summary notification to the node,
// with the registration's publish-options.
func (l *legacy) BuildStanza(_ context.Context, in *engine.SendInput, r *engine.Registration, id string) (*stanza.Element, error) {
	f := in.Facts()
	form := stanza.NewElement(stanza.NSDataForm, "x", "type", "submit")
	field := func(name, value string) {
		fe := stanza.NewElement(stanza.NSDataForm, "field", "var", name)
		fe.Append(stanza.NewElement(stanza.NSDataForm, "value").WithText(value))
		form.Append(fe)
	}
	field("FORM_TYPE", stanza.NSPushSummary)
	field("message-count", "1")
	if l.opts.WithSender && f.From.String() != "" {
		field("last-message-sender", f.From.String())
	}
	switch {
	case l.opts.WithBody && f.HasBody:
		field("last-message-body", truncateUTF8(f.Body, maxLegacyBody))
	case f.Important() && l.opts.importantBody() != "":
		field("last-message-body", l.opts.importantBody())
	}
	if in.Decision.Priority == engine.PriorityHigh {
		field("last-message-priority", "high")
	}
	notif := stanza.NewElement(stanza.NSXEP0357, "notification")
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
