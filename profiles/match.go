// Package profiles holds the built-in Push 2.0 profiles (push2.md "Match
// profiles", "Send profiles"). They satisfy the same engine interfaces as
// WebAssembly profiles; the pipeline cannot tell them apart.
package profiles

import (
	"context"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// Built-in match profile URIs (push2.md "Match profiles").
const (
	MatchAll              = stanza.MatchPrefix + "all"
	MatchImportant        = stanza.MatchPrefix + "important"
	MatchArchived         = stanza.MatchPrefix + "archived"
	MatchArchivedWithBody = stanza.MatchPrefix + "archived-with-body"
	SendNotifyOnly        = stanza.SendPrefix + "notify-only:0"
	SendEncrypted         = stanza.SendPrefix + "sce+rfc8291+rfc8292:0"
	reasonNotImportant    = "not important"
	reasonNotArchived     = "not in the user's archive"
	reasonArchivedNoBody  = "archived, but without a body"
)

// match is a built-in match profile: a URI and a predicate over the facts
// the engine computed for the stanza.
type match struct {
	uri    string
	decide func(f *engine.Facts) (bool, string)
}

var _ engine.MatchProfile = (*match)(nil)

func (m *match) ID() string { return m.uri }

// Provision accepts any <match/>: the built-in profiles define no children of
// their own, and children in other namespaces are ignored as XMPP expects.
func (m *match) Provision(context.Context, *stanza.Element) (any, error) { return nil, nil }

func (m *match) Match(_ context.Context, in *engine.MatchInput) (engine.Decision, error) {
	f := in.Facts()
	ok, reason := m.decide(f)
	if !ok {
		return engine.Decision{Reason: reason}, nil
	}
	// Only a call proposal is a VoIP push: iOS terminates apps that receive
	// a VoIP push without reporting a call, so a retraction must not be one.
	return engine.Decision{Push: true, Priority: f.Priority(), VoIP: f.Call == engine.CallPropose, Reason: reason}, nil
}

// All pushes every stanza (push2.md "urn:xmpp:push2:match:all").
func All() engine.MatchProfile {
	return &match{uri: MatchAll, decide: func(*engine.Facts) (bool, string) { return true, "all stanzas" }}
}

// Important pushes stanzas a user would want to be woken for; see
// engine.Facts.Important for the rules.
func Important() engine.MatchProfile {
	return &match{uri: MatchImportant, decide: func(f *engine.Facts) (bool, string) {
		if f.Important() {
			return true, "important"
		}
		return false, reasonNotImportant
	}}
}

// Archived pushes any stanza stored in the user's own archive: one that
// carries a stanza-id assigned by the account (or that the server reports as
// archived, with its archive id).
func Archived() engine.MatchProfile {
	return &match{uri: MatchArchived, decide: func(f *engine.Facts) (bool, string) {
		if f.ArchiveID != "" {
			return true, "archived"
		}
		return false, reasonNotArchived
	}}
}

// ArchivedWithBody is Archived restricted to messages with a body, which
// excludes typing notifications, receipts and error replies.
func ArchivedWithBody() engine.MatchProfile {
	return &match{uri: MatchArchivedWithBody, decide: func(f *engine.Facts) (bool, string) {
		switch {
		case f.ArchiveID == "":
			return false, reasonNotArchived
		case !f.HasBody || f.Error:
			return false, reasonArchivedNoBody
		}
		return true, "archived with body"
	}}
}
