package engine

import (
	"context"
	"fmt"

	"github.com/push2/push2/engine/stanza"
)

// Ping sends a push to some or all of an account's registrations now,
// without a stanza to match: the equivalent of mod_cloud_notify's
// cloud-notify-ping event, for modules or operators that need a device to
// connect (say, for an incoming call signalled some other way). ids
// restricts it to those registrations; nil means all. Each registration gets
// a notification built by the send profile of its first <match/>, with
// normal priority; filters, grace and dedupe do not apply. The
// notifications go through the outbox like any other.
func (e *Engine) Ping(ctx context.Context, account string, ids []string) ([]*Notification, error) {
	regs, err := e.Registrations(ctx, account)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	now := e.cfg.Clock()
	c := &Context{Account: regsAccount(regs, account), Trigger: TriggerOffline, Now: now}
	st := stanza.NewElement(stanza.NSClient, "message", "type", "headline", "from", domainOf(c.Account))
	var out []*Notification
	for _, r := range regs {
		if (ids != nil && !want[r.ID]) || r.Suspended {
			continue
		}
		n, err := e.build(ctx, r, r.Matches[0], st, c, nil, Decision{Push: true, Priority: PriorityNormal, Reason: "ping"})
		if err != nil {
			return out, fmt.Errorf("ping %s: %w", r.ID, err)
		}
		entry := OutboxEntry{ID: n.ID, Account: r.Account, Reg: r.ID, To: n.To, Stanza: string(n.Stanza.Marshal()), Created: now, Due: now}
		if err := e.store.PutOutbox(entry, true); err != nil {
			return out, err
		}
		e.outbox.add(entry)
		out = append(out, n)
	}
	return out, nil
}

func regsAccount(regs []*Registration, fallback string) string {
	if len(regs) > 0 {
		return regs[0].Account
	}
	return fallback
}
