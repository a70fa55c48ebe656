package profiles

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/push2/push2/engine"
)

// XEP-0357 compatibility: a match and a send profile under
// urn:xmpp:push:0, so legacy clients (Conversations, Monal, Siskin…) are
// served by the same engine, store and outbox as Push 2.0 ones. The rules
// and options are those of mod_cloud_notify (its README and business rules):
// push what is important, publish a urn:xmpp:push:summary form, reveal the
// body and the sender only when the operator allows it.

const (
	nsPubSub       = "http://jabber.org/protocol/pubsub"
	formSummary    = "urn:xmpp:push:summary"
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
func Legacy(opts LegacyOptions) any { return &legacy{opts: opts} }

type legacy struct{ opts LegacyOptions }

var (
	_ engine.MatchProfile  = (*legacy)(nil)
	_ engine.SendProfile   = (*legacy)(nil)
	_ engine.StanzaBuilder = (*legacy)(nil)
)

func (*legacy) URI() string       { return engine.NSLegacy }
func (*legacy) Namespace() string { return engine.NSLegacy }

func (*legacy) Validate(*engine.Element) error       { return nil }
func (*legacy) Prepare(*engine.Element) (any, error) { return nil, nil }

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
func (*legacy) Send(context.Context, *engine.SendInput) ([]*engine.Element, error) {
	return nil, nil
}

// BuildStanza builds the XEP-0357 §6 publish: an IQ from the user's bare
// JID to the app server, publishing a summary notification to the node,
// with the registration's publish-options.
func (l *legacy) BuildStanza(_ context.Context, in *engine.SendInput, r *engine.Registration, id string) (*engine.Element, error) {
	f := in.Facts()
	form := engine.NewElement(engine.NSDataForm, "x", "type", "submit")
	field := func(name, value string) {
		fe := engine.NewElement(engine.NSDataForm, "field", "var", name)
		fe.Append(engine.NewElement(engine.NSDataForm, "value").WithText(value))
		form.Append(fe)
	}
	field("FORM_TYPE", formSummary)
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
	notif := engine.NewElement(engine.NSLegacy, "notification")
	notif.Append(form)
	publish := engine.NewElement(nsPubSub, "publish", "node", r.Client)
	publish.Append(engine.NewElement(nsPubSub, "item").Append(notif))
	pubsub := engine.NewElement(nsPubSub, "pubsub")
	pubsub.Append(publish)
	if opts := in.Send.Child(engine.NSDataForm, "x"); opts != nil {
		po := engine.NewElement(nsPubSub, "publish-options")
		po.Append(opts.Clone())
		pubsub.Append(po)
	}
	iq := engine.NewElement(engine.NSClient, "iq", "type", "set", "to", r.Service, "from", r.Account, "id", id)
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
