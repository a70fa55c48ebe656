package engine

import (
	"context"
)

// match runs the registration's <match/> elements in document order
// (push2.md "Match profiles"): the first whose match profile pushes and
// whose filters and grace let the stanza through decides, so a
// registration gets at most one notification per stanza. out says why
// nothing was chosen when chosen is nil; the decision's priority defaults
// to normal.
func (e *Engine) match(ctx context.Context, r *Registration, s *evaluation) (out Outcome, chosen *Match, decision Decision) {
	facts := &s.facts
	out = Outcome{Reg: r.Key(), Code: OutcomeNoMatch, Reason: "no match profile pushes this stanza"}
	for _, m := range r.Matches {
		mp, ok := e.registry.Match(m.Profile)
		if !ok {
			out.Profile, out.Code, out.Reason = m.Profile, OutcomeNotLoaded, "match profile not loaded"
			continue
		}
		// A profile must not keep the input past its call (MatchProfile),
		// so one serves every call of the evaluation.
		s.in = MatchInput{Stanza: s.st, Match: m.Element, Context: &s.c, Provisioned: m.MatchProvisioned, facts: facts}
		d, err := mp.Match(ctx, &s.in)
		if err != nil {
			e.cfg.Logger.Warn("match profile failed", "profile", m.Profile, "account", r.Account, "id", r.ID, "err", err)
			out.Profile, out.Code, out.Reason = m.Profile, OutcomeProfileError, "match profile error: "+err.Error()
			continue
		}
		out.Profile = m.Profile
		if !d.Push {
			out.Code, out.Reason = OutcomeNoMatch, orDefault(d.Reason, "not matched")
			continue
		}
		if reason, ok := applyFilters(m.Filters, facts); !ok {
			out.Code, out.Reason = OutcomeFilter, reason
			continue
		}
		if reason, ok := e.inGrace(r, m, &s.c, facts); ok {
			out.Code, out.Reason = OutcomeGrace, reason
			continue
		}
		if d.Priority == 0 {
			d.Priority = PriorityNormal
		}
		return out, m, d
	}
	return out, nil, Decision{}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
