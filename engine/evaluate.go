package engine

import (
	"context"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// Evaluate is the pipeline of the package doc, run for one event: the
// stanza's facts once (facts.go), then for each registration its match
// profiles with filters and grace (match.go, filter.go, grace.go), the
// send profile and the notification stanza (notification.go), and the
// dedupe mark recorded with the outbox entry (dedupe.go).

// Event is one stanza that some registrations' devices would miss.
type Event struct {
	Stanza  *stanza.Element
	Context Context
	// Registrations restricts the evaluation to these registration ids: the
	// ones whose session is not live. Nil means every registration of the
	// account.
	Registrations []string
}

// Outcome says what happened to one registration, for --explain, metrics
// and logs.
type Outcome struct {
	Reg     RegKey
	Profile string // the match profile that decided, if any
	Pushed  bool
	Code    OutcomeCode // a small fixed set, for metrics labels
	Reason  string      // why (not), for people: "filter: room@muc is muted"…
}

// OutcomeCode classifies an Outcome.
type OutcomeCode string

// Outcome codes.
const (
	OutcomePushed       OutcomeCode = "pushed"
	OutcomeNoMatch      OutcomeCode = "no-match"
	OutcomeFilter       OutcomeCode = "filter"
	OutcomeGrace        OutcomeCode = "grace"
	OutcomeDuplicate    OutcomeCode = "duplicate"
	OutcomeNotLoaded    OutcomeCode = "profile-not-loaded"
	OutcomeProfileError OutcomeCode = "profile-error"
	OutcomeStoreError   OutcomeCode = "store-error"
	OutcomeSuspended    OutcomeCode = "suspended" // the server disabled the account
)

// Result is the answer to an Event.
type Result struct {
	Notifications []*Notification
	Outcomes      []Outcome
}

// Evaluate runs the pipeline for one event. Every notification it returns
// is already in the outbox (durably), where Outbox.Run delivers it. Errors of one profile fail only
// that registration's evaluation (recorded in Outcomes); Evaluate itself
// fails only for bad input or a store failure.
func (e *Engine) Evaluate(ctx context.Context, ev *Event) (*Result, error) {
	if ev.Stanza == nil {
		return nil, stanza.BadRequest("no stanza")
	}
	acct, ok := normalizeAccount(ev.Context.Account)
	if !ok {
		return nil, stanza.BadRequest("the account is not a valid bare JID")
	}
	regs, err := e.registrations(ctx, acct)
	if err != nil {
		return nil, err
	}
	// One allocation holds what an evaluation needs (the result, its first
	// outcome, the context, the facts and the match input): an event that
	// pushes nothing, the common case, allocates nothing else.
	s := &evaluation{st: ev.Stanza}
	s.res.Outcomes = s.outcome[:0]
	if len(regs) == 0 {
		return &s.res, nil
	}
	s.c = ev.Context
	s.c.Account = acct
	if s.c.Now.IsZero() {
		s.c.Now = e.cfg.Clock()
	}
	var only map[string]bool
	if ev.Registrations != nil {
		only = make(map[string]bool, len(ev.Registrations))
		for _, id := range ev.Registrations {
			only[id] = true
		}
	}
	inspect(&s.facts, ev.Stanza, &s.c)
	for _, r := range regs {
		if only != nil && !only[r.ID] {
			continue
		}
		if r.Suspended {
			s.res.Outcomes = append(s.res.Outcomes, Outcome{Reg: r.Key(), Code: OutcomeSuspended, Reason: "suspended: the server disabled the account"})
			continue
		}
		out, n := e.evaluateOne(ctx, r, s)
		s.res.Outcomes = append(s.res.Outcomes, out)
		if n != nil {
			s.res.Notifications = append(s.res.Notifications, n)
		}
	}
	return &s.res, nil
}

// evaluation is the state of one Evaluate call.
type evaluation struct {
	res     Result
	outcome [1]Outcome // res.Outcomes' first array: most accounts have one registration
	st      *stanza.Element
	c       Context
	facts   Facts
	in      MatchInput // reused by every match profile call
	keys    []string   // the dedupe keys, computed by dedupeKeys on the first push
}

// dedupeKeys hashes the stanza: computed only if some registration gets a
// push, once per event.
func (s *evaluation) dedupeKeys() []string {
	if s.keys == nil {
		s.keys = dedupeKeys(s.st, &s.facts)
	}
	return s.keys
}

// normalizeAccount returns the bare form of an account JID, which must have
// a localpart.
func normalizeAccount(account string) (string, bool) {
	p, err := lookupJID(strings.TrimSpace(account))
	if err != nil || p.j.Localpart() == "" {
		return "", false
	}
	return p.bare, true
}

func (e *Engine) evaluateOne(ctx context.Context, r *Registration, s *evaluation) (Outcome, *Notification) {
	out, chosen, decision := e.match(ctx, r, s)
	if chosen == nil {
		return out, nil
	}
	keys := s.dedupeKeys()
	n, err := e.build(ctx, r, chosen, s.st, &s.c, &s.facts, decision)
	if err != nil {
		e.cfg.Logger.Warn("send profile failed", "profile", chosen.SendNS, "account", r.Account, "id", r.ID, "err", err)
		out.Code, out.Reason = OutcomeProfileError, "send profile error: "+err.Error()
		return out, nil
	}
	if out.Code, out.Reason = e.enqueueOnce(r, n, keys, s.c.Now); out.Code != OutcomePushed {
		return out, nil
	}
	out.Pushed, out.Reason = true, "pushed ("+decision.Priority.String()+")"
	return out, n
}
