package bridgeproto

import (
	"context"

	"github.com/push2/push2/engine/stanza"
)

// KindAccount is an account's lifecycle change on the server (IQ set,
// bridge → push2d; docs/bridge-protocol.md "Accounts").
const KindAccount = "account"

// Account states the server reports.
const (
	AccountDeleted  = "deleted"  // the server deleted the account: its registrations go
	AccountDisabled = "disabled" // the server disabled it: registrations kept, no pushes
	AccountEnabled  = "enabled"  // enabled again: pushes as before
)

// AccountChange says that the server deleted, disabled or enabled Account.
type AccountChange struct{ Account, State string }

// ParseAccountChange reads <account/>.
func ParseAccountChange(el *stanza.Element) (AccountChange, error) {
	if err := expect(el, KindAccount); err != nil {
		return AccountChange{}, err
	}
	a := AccountChange{Account: el.AttrValue("account"), State: el.AttrValue("state")}
	switch {
	case a.Account == "":
		return a, stanza.BadRequest("<account/> needs the account attribute")
	case a.State != AccountDeleted && a.State != AccountDisabled && a.State != AccountEnabled:
		return a, stanza.BadRequest("<account/> needs state %q, %q or %q", AccountDeleted, AccountDisabled, AccountEnabled)
	}
	return a, nil
}

// Element renders the change.
func (a AccountChange) Element() *stanza.Element {
	return stanza.NewElement(NS, KindAccount, "account", a.Account, "state", a.State)
}

// ChangeAccount applies an account change to the engine, durably before it
// returns (the bridge keeps the change until push2d's result): deleted
// removes the account's registrations, disabled suspends them, enabled
// lifts the suspension. The account must be on a configured domain.
func (s *Service) ChangeAccount(ctx context.Context, a AccountChange) error {
	if err := s.checkDomain(a.Account); err != nil {
		return err
	}
	var n int
	var err error
	switch a.State {
	case AccountDeleted:
		n, err = s.eng.DeleteAccount(ctx, a.Account)
	default:
		n, err = s.eng.SuspendAccount(ctx, a.Account, a.State == AccountDisabled)
	}
	if err != nil {
		s.log.Error("account change not applied", "account", a.Account, "state", a.State, "err", err)
		if _, ok := stanza.AsError(err); ok {
			return err
		}
		return stanza.NewError(stanza.Wait, stanza.CondInternalServerError, "the change could not be stored; try again")
	}
	s.log.Info("account changed on the server", "account", a.Account, "state", a.State, "registrations", n)
	return nil
}

func (s *Service) changeAccount(ctx context.Context, el *stanza.Element) error {
	a, err := ParseAccountChange(el)
	if err != nil {
		return err
	}
	return s.ChangeAccount(ctx, a)
}
