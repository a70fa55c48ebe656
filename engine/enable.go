package engine

import (
	"context"
	"errors"

	"github.com/push2/push2/engine/stanza"
)

// Registrations come and go here: <enable/> (push2.md "Client registers to
// receive push notifications"), <disable/> ("Client disables future
// pushes") and removal by the operator or the outbox. Parsing and
// validation are in registration.go; every write goes through changing
// (regcache.go) so no reader caches a list the write is replacing.

// Enable validates and stores a registration for the session identified by
// id (the SASL2 client id, else the resource). On error nothing is stored and
// the error is a *stanza.Error. Re-enabling with the same id replaces the
// registration. The registration is durable when Enable returns.
func (e *Engine) Enable(ctx context.Context, account, id string, enable *stanza.Element) (*Registration, []RegKey, error) {
	r, err := ParseEnable(ctx, e.registry, e.cfg.Limits, account, id, enable)
	if err != nil {
		return nil, nil, err
	}
	if err := e.checkFits(r); err != nil {
		return nil, nil, err
	}
	r.Created = e.cfg.Clock()
	stored := StoredRegistration{Account: r.Account, ID: r.ID, Created: r.Created, Enable: r.Enable.String()}
	done := e.changing(r.Account)
	evicted, err := e.store.PutRegistration(stored, e.cfg.MaxRegistrations)
	done()
	if errors.Is(err, ErrStorageLow) {
		// Not an error of push2d's: the operator's disk is nearly full
		// (the store logs the change of state once).
		e.cfg.Logger.Debug("enable refused: store short of space", "account", r.Account, "id", r.ID, "err", err)
		return nil, nil, stanza.NewError(stanza.Wait, stanza.CondResourceConstraint, "the push service is short of storage space and accepts no new registrations for now; try again later")
	}
	if err != nil {
		e.cfg.Logger.Error("store registration", "account", r.Account, "id", r.ID, "err", err)
		return nil, nil, stanza.InternalServerError("could not store the registration")
	}
	for _, k := range evicted {
		e.cfg.Logger.Info("registration evicted: too many devices", "account", k.Account, "id", k.ID, "max", e.cfg.MaxRegistrations)
	}
	return r, evicted, nil
}

// checkFits asks send profiles that can tell (FitChecker) whether their
// output fits the notification limit for this registration.
func (e *Engine) checkFits(r *Registration) error {
	for _, m := range r.Matches {
		sp, ok := e.registry.Send(m.SendNS)
		if !ok {
			continue
		}
		fc, ok := sp.(FitChecker)
		if !ok {
			continue
		}
		// The largest envelope this registration can get: the longest
		// priority and <voip/>.
		msg, _ := envelope(r, newNotificationID(), PriorityNormal, true)
		budget := e.cfg.NotificationLimit - msg.Size()
		if err := fc.Fits(m.SendProvisioned, r.Account, budget); err != nil {
			return stanza.BadRequest("<send xmlns='%s'/>: %s (notification limit %d bytes)", m.SendNS, err.Error(), e.cfg.NotificationLimit)
		}
	}
	return nil
}

// Disable removes the registration of session id (push2.md "Client disables
// future pushes"). Disabling a session without a registration succeeds.
func (e *Engine) Disable(ctx context.Context, account, id string) (bool, error) {
	acct, err := NormalizeJID(account)
	if err != nil || acct.Localpart() == "" {
		return false, stanza.BadRequest("the account is not a valid bare JID")
	}
	if id == "" {
		return false, stanza.BadRequest("the session has neither a SASL2 client id nor a resource")
	}
	k := RegKey{Account: acct.Bare().String(), ID: id}
	done := e.changing(k.Account)
	ok, err := e.store.DeleteRegistration(k)
	done()
	if err != nil {
		e.cfg.Logger.Error("delete registration", "account", k.Account, "id", k.ID, "err", err)
		return false, stanza.InternalServerError("could not remove the registration")
	}
	return ok, nil
}

// Remove deletes a registration for a reason other than the client's
// <disable/> (the operator, or delivery that keeps failing).
func (e *Engine) Remove(k RegKey, reason string) (bool, error) {
	done := e.changing(k.Account)
	ok, err := e.store.DeleteRegistration(k)
	done()
	if err == nil {
		if ok {
			e.cfg.Logger.Info("registration removed", "account", k.Account, "id", k.ID, "reason", reason)
		}
	}
	return ok, err
}
