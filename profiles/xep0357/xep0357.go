// Package xep0357 serves XEP-0357 (Push Notifications, urn:xmpp:push:0)
// clients — Conversations, Monal, Siskin… — from the Push 2.0 engine, so
// that they share its store, outbox, dedupe and error accounting with Push
// 2.0 registrations. Everything XEP-0357 is here: the <enable/> and
// <disable/> of §5 and §7 (ParseEnable, ParseDisable), the registration ids
// (ID, IsID), the match and send profile pair registered under
// urn:xmpp:push:0, and the §6 publish with its publish-options form
// (BuildStanza).
//
// The engine knows nothing of XEP-0357: it hands every <enable/> and
// <disable/> whose namespace is that of a registered send profile
// implementing engine.EnableParser to that profile. The rules and options
// are those of mod_cloud_notify (its README and business rules): push what
// is important, publish a urn:xmpp:push:summary form, reveal the body and
// the sender only when the operator allows it.
package xep0357

import (
	"context"
	"strings"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// NS is the XEP-0357 namespace: of <enable/> and <disable/>, and the URI
// of the profile pair.
const NS = stanza.NSXEP0357

const (
	idTag          = "xep0357:"
	maxBody        = 512 // bytes of body revealed when WithBody is set
	defaultSummary = "New Message!"
	// reasonNotImportant is the decision reason of the built-in important
	// match profile, whose rules XEP-0357 registrations follow.
	reasonNotImportant = "not important"
)

// ID is the registration id of an XEP-0357 registration: XEP-0357
// identifies a registration by its app server JID and node, not by session.
// The form is stored; it must not change.
func ID(jid, node string) string { return idTag + jid + "<" + node }

// IsID reports whether a registration id is an XEP-0357 one.
func IsID(id string) bool { return strings.HasPrefix(id, idTag) }

// Options are mod_cloud_notify's privacy options. The zero value is its
// default: neither body nor sender revealed.
type Options struct {
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

func (o Options) importantBody() string {
	if o.ImportantBody == nil {
		return defaultSummary
	}
	return *o.ImportantBody
}

// Profile is the XEP-0357 profile pair: one value that is both the match
// profile and the send profile for urn:xmpp:push:0, and the engine's
// EnableParser for that namespace. profiles.BuiltinWith adds it to the
// profile set when Options.XEP0357 is set; Set registers it alone.
type Profile struct{ opts Options }

// New returns the XEP-0357 profile pair with opts.
func New(opts Options) *Profile { return &Profile{opts: opts} }

// Set returns the pair as a profile set of its own, ready for
// engine.Registry.Register.
func Set(opts Options) engine.ProfileSet {
	p := New(opts)
	return engine.ProfileSet{Match: []engine.MatchProfile{p}, Send: []engine.SendProfile{p}}
}

var (
	_ engine.MatchProfile  = (*Profile)(nil)
	_ engine.SendProfile   = (*Profile)(nil)
	_ engine.StanzaBuilder = (*Profile)(nil)
	_ engine.EnableParser  = (*Profile)(nil)
)

// ID is NS, for the match and the send profile alike.
func (*Profile) ID() string { return NS }

// Provision accepts every <match/> and <send/>: ParseEnable built both from
// the XEP-0357 <enable/>, which it has checked.
func (*Profile) Provision(context.Context, *stanza.Element) (any, error) { return nil, nil }

// Match pushes important stanzas (see engine.Facts.Important), as
// mod_cloud_notify does.
func (*Profile) Match(_ context.Context, in *engine.MatchInput) (engine.Decision, error) {
	f := in.Facts()
	if !f.Important() {
		return engine.Decision{Reason: reasonNotImportant}, nil
	}
	return engine.Decision{Push: true, Priority: f.Priority(), VoIP: f.Call == engine.CallPropose, Reason: "important"}, nil
}

// Send is not used: BuildStanza builds the whole publish.
func (*Profile) Send(context.Context, *engine.SendInput) ([]*stanza.Element, error) {
	return nil, nil
}
