package engine

import (
	"context"
	"strings"
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

// ParsePriority parses "low", "normal" or "high".
func ParsePriority(s string) (Priority, bool) {
	switch s {
	case "low":
		return PriorityLow, true
	case "normal":
		return PriorityNormal, true
	case "high":
		return PriorityHigh, true
	}
	return 0, false
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

	facts *Facts
}

// Decision is a match profile's answer.
type Decision struct {
	Push     bool
	Priority Priority // zero means normal
	VoIP     bool     // a call: the notification carries <voip/>
	Reason   string   // short, for --explain and metrics; never secret
}

// MatchProfile decides whether a stanza is pushed. Implementations must be
// safe for concurrent use and must not retain the input.
type MatchProfile interface {
	// URI identifies the profile, e.g. "urn:xmpp:push2:match:all".
	URI() string
	// Validate checks a registration's <match/> element at enable time; an
	// error refuses the registration (return a *StanzaError for a specific
	// condition, anything else becomes bad-request).
	Validate(match *stanza.Element) error
	Match(ctx context.Context, in *MatchInput) (Decision, error)
}

// SendInput is what a send profile builds a notification from.
type SendInput struct {
	Stanza   *stanza.Element
	Context  *Context
	Decision Decision
	// Send is the registration's <send/> element, read-only.
	Send *stanza.Element
	// Prepared is what the profile's Prepare returned for this <send/>.
	Prepared any
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
// engine adds <client/>, <priority/> and <voip/> itself. Implementations
// must be safe for concurrent use.
type SendProfile interface {
	// Namespace identifies the profile: the xmlns of <send/>.
	Namespace() string
	// Prepare validates a <send/> element at enable time and returns a value
	// (parsed keys, say) handed back in SendInput.Prepared. It must not echo
	// secrets in its errors.
	Prepare(send *stanza.Element) (any, error)
	Send(ctx context.Context, in *SendInput) ([]*stanza.Element, error)
}

// StanzaBuilder is implemented by send profiles that build the whole
// stanza to the push service rather than children of a push2
// <notification/> (the XEP-0357 compatibility profile publishes to a pubsub
// node with an IQ). id is the notification id the stanza must carry. The
// engine's size limit applies to the result.
type StanzaBuilder interface {
	BuildStanza(ctx context.Context, in *SendInput, r *Registration, id string) (*stanza.Element, error)
}

// FitChecker is implemented by send profiles whose output has a fixed
// part that may not fit every notification limit (a signed JWT, say). At
// enable time the engine calls Fits with the registration's prepared value
// and the bytes the profile's children may take at most (the limit minus
// the rest of the largest notification the registration can get); an
// error refuses the registration with bad-request, rather than accepting
// one whose every push would fail.
type FitChecker interface {
	Fits(prepared any, account string, budget int) error
}

// ProfileInfo describes a registered profile for disco and the admin API.
type ProfileInfo struct {
	URI    string
	Kind   string // "match" or "send"
	Source string // "builtin" or a module description such as "wasm sha256:…"
}

// IsReservedURI reports whether uri is in one of the prefixes push2.md
// reserves for profiles defined by XEPs.
func IsReservedURI(uri string) bool {
	return strings.HasPrefix(uri, stanza.MatchPrefix) || strings.HasPrefix(uri, stanza.SendPrefix)
}
