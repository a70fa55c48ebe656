package engine

import (
	"context"
	"time"

	"github.com/push2/push2/engine/stanza"
)

// Trigger says why a stanza reached the engine: which part of the server
// noticed that a registration's device would miss it.
type Trigger string

// The triggers of DESIGN.md "Delivery and state".
const (
	TriggerOffline    Trigger = "offline"     // stored for an account with no session
	TriggerHibernated Trigger = "hibernated"  // queued for a XEP-0198 hibernated session
	TriggerAckDelayed Trigger = "ack-delayed" // a live session that stopped acking
	TriggerArchived   Trigger = "archived"    // stored in the user's archive (MAM)
	TriggerGroupchat  Trigger = "groupchat"   // a MUC message addressed to the bare JID
)

// ParseTrigger validates a trigger name.
func ParseTrigger(s string) (Trigger, bool) {
	switch t := Trigger(s); t {
	case TriggerOffline, TriggerHibernated, TriggerAckDelayed, TriggerArchived, TriggerGroupchat:
		return t, true
	}
	return "", false
}

// Priority is the urgency of a notification, carried as <priority/>.
type Priority int

// Priorities, ordered so that a larger value is more urgent.
const (
	PriorityLow Priority = iota + 1
	PriorityNormal
	PriorityHigh
)

func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "low"
	case PriorityHigh:
		return "high"
	default:
		return "normal"
	}
}

// Context is what the server knows about a stanza beyond its bytes. The
// bridge fills it; `push2 simulate` takes it from flags.
type Context struct {
	// Account is the bare JID of the user the stanza is for.
	Account string
	Trigger Trigger
	// ArchiveID is the stanza-id the user's own archive assigned, if the
	// stanza was archived; ArchiveBy is the JID that assigned it (the
	// account, for the user's own archive).
	ArchiveID string
	ArchiveBy string
	// Nick is the user's nick in the MUC room the stanza comes from, if any.
	Nick string
	// Now is the evaluation time; zero means the engine's clock.
	Now time.Time
}

// MatchInput is what a match profile decides on.
type MatchInput struct {
	Stanza  *stanza.Element // the stanza, read-only
	Match   *stanza.Element // the registration's <match/> element, read-only
	Context *Context
	// Provisioned is what the profile's Provision returned for Match.
	Provisioned any

	facts *Facts
}

// Decision is a match profile's answer.
type Decision struct {
	Push     bool
	Priority Priority // zero means normal
	VoIP     bool     // a call: the notification carries <voip/>
	Reason   string   // short, for --explain and metrics; never secret
}

// Profile is what match and send profiles (push2.md "Match and send
// profiles") have in common: an identity and one enable-time step. Built-in
// profiles (package profiles), the XEP-0357 pair and WebAssembly modules
// (package host) all implement it; the engine cannot tell them apart.
//
// The engine calls a profile's methods at these times, and only then:
//
//   - ID when the profile is added to or withdrawn from a Registry. It must
//     return the same value for the profile's whole life.
//
//   - Provision each time a registration is parsed, once per <match/>
//     naming a match profile and once per <send/> in a send profile's
//     namespace: when a client sends <enable/>, and again whenever
//     registrations are reloaded from the store — after a restart, and
//     after every profile swap (a Registry change), lazily, the next time an
//     account's registrations are read. It must therefore be pure (the same
//     element gives the same result; no I/O, no side effects) and cheap: it
//     runs again for every stored registration. ctx is the client's request
//     at enable time, or the request that caused the reload; when it is
//     done Provision should return ctx.Err(). An error refuses the
//     <enable/>: a *stanza.Error for a specific condition, anything else
//     becomes bad-request with the error's text (so it must not echo
//     secrets). On reload an error leaves the registration stored but
//     unused, until a profile accepts it again. The returned value (parsed
//     keys, say) is not persisted; the engine hands it back, untouched, in
//     MatchInput.Provisioned or SendInput.Provisioned.
//
//   - Match or Send for each event whose stanza reaches the profile (see
//     the interfaces), with ctx bounding the event's evaluation.
//
// Implementations must be safe for concurrent use: one profile value serves
// every registration and event at once.
type Profile interface {
	// ID identifies the profile: its URI, which for a match profile is the
	// profile attribute of <match/> (e.g. "urn:xmpp:push2:match:all") and for
	// a send profile the namespace of <send/>. One value may be both a match
	// and a send profile under one ID (the XEP-0357 pair).
	ID() string
	// Provision checks the registration's element for this profile (<match/>
	// or <send/>) at enable and reload time and returns what later calls need
	// from it.
	Provision(ctx context.Context, el *stanza.Element) (any, error)
}

// MatchProfile decides whether a stanza is pushed. Match runs once per
// event for each <match/> naming the profile, in document order, until one
// pushes and passes its filters and grace; it must not retain the input.
type MatchProfile interface {
	Profile
	// Match decides for one stanza. in is valid only during the call: the
	// engine reuses it for the next profile.
	Match(ctx context.Context, in *MatchInput) (Decision, error)
}

// SendInput is what a send profile builds a notification from.
type SendInput struct {
	Stanza   *stanza.Element
	Context  *Context
	Decision Decision
	// Send is the registration's <send/> element, read-only.
	Send *stanza.Element
	// Provisioned is what the profile's Provision returned for Send.
	Provisioned any
	// Budget is the number of bytes the profile's children may take in the
	// serialized notification stanza; the engine refuses a result that
	// exceeds it.
	Budget int

	facts *Facts
}

// Facts returns the stanza's facts: the ones the pipeline computed for the
// match profiles, or computed now for an input built outside it.
func (in *SendInput) Facts() *Facts {
	if in.facts == nil {
		in.facts = Inspect(in.Stanza, in.Context)
	}
	return in.facts
}

// SendProfile builds the profile-specific children of <notification/>. The
// engine adds <client/>, <priority/> and <voip/> itself. Send runs once per
// event for the registration whose match profile decided to push; it must
// not retain the input.
type SendProfile interface {
	Profile
	Send(ctx context.Context, in *SendInput) ([]*stanza.Element, error)
}

// TokenRefresher is implemented by send profiles whose notifications carry
// a credential that expires: the encrypted profile's VAPID <jwt/>, whose
// "exp" lies at most 24 hours ahead (RFC 8292 §2). A notification that
// waited in the outbox (a retry, a restart) may outlive it; before every
// send of a notification that has a <jwt/> the outbox asks the profile,
// which renews the credential in n (the <notification/>) if it expired or
// is about to, and reports whether it changed anything. provisioned is the
// registration's SendProvisioned.
type TokenRefresher interface {
	Refresh(ctx context.Context, n *stanza.Element, provisioned any, account string, now time.Time) (changed bool, err error)
}

// ProfileSet is a set of profiles as one source (the built-in profiles, the
// XEP-0357 pair, a WebAssembly module) hands them to a Registry.
type ProfileSet struct {
	Match []MatchProfile
	Send  []SendProfile
}

// StanzaBuilder is implemented by send profiles that build the whole
// stanza to the push service rather than children of a push2
// <notification/> (the XEP-0357 compatibility profile publishes to a pubsub
// node with an IQ). id is the notification id the stanza must carry. The
// engine's size limit applies to the result.
type StanzaBuilder interface {
	BuildStanza(ctx context.Context, in *SendInput, r *Registration, id string) (*stanza.Element, error)
}

// EnableParser is implemented by a send profile whose namespace is also
// that of another push protocol's <enable/> and <disable/> (XEP-0357's
// urn:xmpp:push:0, package profiles/xep0357), so that the protocol's
// clients are served by the same pipeline, store and outbox. The engine
// hands it every <enable/> and <disable/> in that namespace; without such a
// profile they are refused with feature-not-implemented.
//
// ParseEnable turns an <enable/> into a registration of account (a
// normalized bare JID): its id, service, client and matches (each naming
// profiles of the registry, usually this one, with what their Provision
// returned). It is called when Provision would be (see Profile): at enable
// time and again whenever registrations are reloaded (restart, profile
// swap), so it must be pure and cheap, and return ctx.Err() once ctx is
// done. Errors are as Provision's; nothing is stored when it fails. Its
// Registration.Enable is what the store keeps: an <enable/> in the same
// namespace holding only what ParseEnable reads again on load (nil: the
// element as received). The stored form is limited as a Push 2.0 one is
// (Limits.MaxEnableBytes, refused with policy-violation).
//
// ParseDisable reads a <disable/> and returns which of the account's
// registrations it removes; Engine.DisableForeign removes them.
type EnableParser interface {
	ParseEnable(ctx context.Context, account string, enable *stanza.Element, lim Limits) (*Registration, error)
	ParseDisable(disable *stanza.Element) (func(*Registration) bool, error)
}

// FitChecker is implemented by send profiles whose output has a fixed
// part that may not fit every notification limit (a signed JWT, say). At
// enable time (not on reload) the engine calls Fits with what Provision
// returned for the registration's <send/>
// and the bytes the profile's children may take at most (the limit minus
// the rest of the largest notification the registration can get); an
// error refuses the registration with bad-request, rather than accepting
// one whose every push would fail.
type FitChecker interface {
	Fits(provisioned any, account string, budget int) error
}

// ProfileInfo describes a registered profile for disco and the admin API.
type ProfileInfo struct {
	URI    string
	Kind   string // "match" or "send"
	Source string // "builtin" or a module description such as "wasm sha256:…"
}
