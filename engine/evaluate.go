package engine

import (
	"context"
	"sync"

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
	acct, err := NormalizeJID(ev.Context.Account)
	if err != nil || acct.Localpart() == "" {
		return nil, stanza.BadRequest("the account is not a valid bare JID")
	}
	c := ev.Context
	c.Account = acct.Bare().String()
	if c.Now.IsZero() {
		c.Now = e.cfg.Clock()
	}
	regs, err := e.Registrations(ctx, c.Account)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	if len(regs) == 0 {
		return res, nil
	}
	var only map[string]bool
	if ev.Registrations != nil {
		only = make(map[string]bool, len(ev.Registrations))
		for _, id := range ev.Registrations {
			only[id] = true
		}
	}
	facts := Inspect(ev.Stanza, &c)
	// The dedupe keys hash the stanza: computed only if some registration
	// gets a push.
	keys := sync.OnceValue(func() []string { return dedupeKeys(ev.Stanza, facts) })
	for _, r := range regs {
		if only != nil && !only[r.ID] {
			continue
		}
		out, n := e.evaluateOne(ctx, r, ev.Stanza, &c, facts, keys)
		res.Outcomes = append(res.Outcomes, out)
		if n != nil {
			res.Notifications = append(res.Notifications, n)
		}
	}
	return res, nil
}

func (e *Engine) evaluateOne(ctx context.Context, r *Registration, st *stanza.Element, c *Context, facts *Facts, lazyKeys func() []string) (Outcome, *Notification) {
	out, chosen, decision := e.match(ctx, r, st, c, facts)
	if chosen == nil {
		return out, nil
	}
	keys := lazyKeys()
	n, err := e.build(ctx, r, chosen, st, c, facts, decision)
	if err != nil {
		e.cfg.Logger.Warn("send profile failed", "profile", chosen.SendNS, "account", r.Account, "id", r.ID, "err", err)
		out.Code, out.Reason = OutcomeProfileError, "send profile error: "+err.Error()
		return out, nil
	}
	if out.Code, out.Reason = e.enqueueOnce(r, n, keys, c.Now); out.Code != OutcomePushed {
		return out, nil
	}
	out.Pushed, out.Reason = true, "pushed ("+decision.Priority.String()+")"
	return out, n
}
