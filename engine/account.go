package engine

import (
	"context"

	"github.com/push2/push2/engine/stanza"
)

// The XMPP server's account lifecycle, as far as pushes are concerned: an
// account the server deletes loses its registrations; one the server
// disables (Prosody 13's user-disabled) keeps them, suspended, and gets no
// pushes until the server enables it again. The state is kept on each
// registration (StoredRegistration.Suspended), so it survives restarts and
// goes wherever the registrations go; an account without registrations has
// nothing to suspend.

// DeleteAccount removes every registration of account (with their dedupe
// marks and error states), as when the server deleted the account, and
// returns how many there were. Notifications already in the outbox are
// still delivered.
func (e *Engine) DeleteAccount(ctx context.Context, account string) (int, error) {
	acct, n, err := e.eachStored(account, func(s StoredRegistration) (bool, error) {
		return e.store.DeleteRegistration(RegKey{Account: s.Account, ID: s.ID})
	})
	if err == nil {
		e.cfg.Logger.Info("account deleted: registrations removed", "account", acct, "count", n)
	}
	return n, err
}

// SuspendAccount marks every registration of account suspended (true: the
// server disabled the account) or not (false: enabled again), durably, and
// returns how many registrations changed. Evaluate gives a suspended
// registration no push (OutcomeSuspended); Ping skips it. Each
// registration is written on its own: after a failure some may have
// changed, and calling again finishes the job (it is idempotent). Writing a
// registration clears its delivery error state, as a fresh enable does.
func (e *Engine) SuspendAccount(ctx context.Context, account string, suspended bool) (int, error) {
	acct, n, err := e.eachStored(account, func(s StoredRegistration) (bool, error) {
		if s.Suspended == suspended {
			return false, nil
		}
		s.Suspended = suspended
		_, err := e.store.PutRegistration(s, 0)
		return err == nil, err
	})
	if err == nil {
		e.cfg.Logger.Info("account state changed", "account", acct, "suspended", suspended, "registrations", n)
	}
	return n, err
}

// eachStored calls fn for each stored registration of account, as one
// change of the account's registrations (see changing), until fn fails;
// it returns the normalized account and how many calls reported a change.
func (e *Engine) eachStored(account string, fn func(StoredRegistration) (bool, error)) (string, int, error) {
	acct, err := accountKey(account)
	if err != nil {
		return "", 0, err
	}
	done := e.changing(acct)
	defer done()
	stored, err := e.store.Registrations(acct)
	if err != nil {
		return acct, 0, err
	}
	n := 0
	for _, s := range stored {
		changed, err := fn(s)
		if err != nil {
			return acct, n, err
		}
		if changed {
			n++
		}
	}
	return acct, n, nil
}

// accountKey is account as the store keys it (bare, normalized), or a
// bad-request for anything else.
func accountKey(account string) (string, error) {
	acct, err := NormalizeJID(account)
	if err != nil || acct.Localpart() == "" || acct.Resourcepart() != "" {
		return "", stanza.BadRequest("the account is not a valid bare JID")
	}
	return acct.String(), nil
}
