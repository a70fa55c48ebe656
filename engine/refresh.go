package engine

import (
	"context"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// refreshEntry lets the registration's send profiles renew an expiring
// credential in a notification about to be sent (TokenRefresher): only
// push2 notifications with a <jwt/> are looked at, so the common send costs
// one substring search. When a profile changed the stanza, the entry
// carries the new serialization (the outbox stores it with the send).
// Failures are logged and the notification goes out as it was: the push
// service then answers, and the delivery policy acts.
func (e *Engine) refreshEntry(ctx context.Context, en *OutboxEntry) {
	if !strings.Contains(en.Stanza, "<jwt") {
		return
	}
	regs, err := e.registrations(ctx, en.Account)
	if err != nil {
		return
	}
	var reg *Registration
	for _, r := range regs {
		if r.ID == en.Reg {
			reg = r
		}
	}
	if reg == nil {
		return
	}
	msg, err := stanza.Parse([]byte(en.Stanza))
	if err != nil {
		return
	}
	n := msg.Child(stanza.NSPush2, "notification")
	if n == nil || n.Child(stanza.NSPush2, "jwt") == nil {
		return
	}
	now := e.cfg.Clock()
	for _, m := range reg.Matches {
		sp, ok := e.registry.Send(m.SendNS)
		if !ok {
			continue
		}
		tr, ok := sp.(TokenRefresher)
		if !ok {
			continue
		}
		changed, err := tr.Refresh(ctx, n, m.SendProvisioned, reg.Account, now)
		if err != nil {
			e.cfg.Logger.Warn("outbox: renewing the notification's token failed", "account", en.Account, "registration", en.Reg, "id", en.ID, "err", err)
			return
		}
		if changed {
			en.Stanza = string(msg.Marshal())
			e.cfg.Logger.Info("outbox: renewed the notification's expiring token", "account", en.Account, "registration", en.Reg, "id", en.ID)
			return
		}
	}
}
