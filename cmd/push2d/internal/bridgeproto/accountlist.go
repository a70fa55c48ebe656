package bridgeproto

import (
	"context"
	"errors"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// push2d tells each domain's bridge which of its accounts have
// registrations (docs/bridge-protocol.md "Accounts with registrations"),
// so that the bridge sends nothing for the others: on every (re)connection
// the whole list, in chunks of at most AccountChunk accounts, and then
// every change as it happens.

// KindAccounts is the element of both forms: a chunk of the whole list
// (with a list attribute) or a change (add / remove children).
const KindAccounts = "accounts"

// AccountChunk is the most accounts in one <accounts/> message: some 50
// bytes each, far below any server's stanza size limit.
const AccountChunk = 500

// AccountList is one chunk of the whole list: List names the list (new on
// every announcement), Last is true on its final chunk.
type AccountList struct {
	List     string
	Last     bool
	Accounts []string
}

// Element renders the chunk.
func (l *AccountList) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindAccounts, "list", l.List, "last", boolAttr(l.Last))
	for _, a := range l.Accounts {
		el.Append(stanza.NewElement(NS, "account", "jid", a))
	}
	return el
}

// RegisteredChange says that Account now has registrations (Has) or has none.
type RegisteredChange struct {
	Account string
	Has     bool
}

// Element renders the change.
func (c RegisteredChange) Element() *stanza.Element {
	name := "remove"
	if c.Has {
		name = "add"
	}
	el := stanza.NewElement(NS, KindAccounts)
	el.Append(stanza.NewElement(NS, name, "jid", c.Account))
	return el
}

// ParseAccounts reads either form of <accounts/> (what a bridge does):
// a chunk (list set) or the changes it carries.
func ParseAccounts(el *stanza.Element) (*AccountList, []RegisteredChange, error) {
	if err := expect(el, KindAccounts); err != nil {
		return nil, nil, err
	}
	if list := el.AttrValue("list"); list != "" {
		l := &AccountList{List: list, Last: el.AttrValue("last") == "true"}
		for _, c := range el.Children {
			if c.Is(NS, "account") && c.AttrValue("jid") != "" {
				l.Accounts = append(l.Accounts, c.AttrValue("jid"))
			}
		}
		return l, nil, nil
	}
	var changes []RegisteredChange
	for _, c := range el.Children {
		if (c.Is(NS, "add") || c.Is(NS, "remove")) && c.AttrValue("jid") != "" {
			changes = append(changes, RegisteredChange{Account: c.AttrValue("jid"), Has: c.Name.Local == "add"})
		}
	}
	return nil, changes, nil
}

func boolAttr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// domainOf returns the domain of a bare JID.
func domainOf(account string) string {
	_, d, _ := strings.Cut(account, "@")
	return d
}

// AnnounceAccounts sends every domain's bridge the whole list of its
// accounts with registrations; call it on every (re)connection, after
// AnnounceFeatures. Changes made meanwhile wait for it, so the bridge never
// gets a change older than the list.
func (s *Service) AnnounceAccounts(ctx context.Context) {
	if !s.cfg.AccountList {
		return
	}
	s.accountsMu.Lock()
	defer s.accountsMu.Unlock()
	byDomain := map[string][]string{}
	for _, d := range s.cfg.Domains {
		byDomain[d] = nil
	}
	err := s.eng.ForEachAccount(func(account string) error {
		if d := domainOf(account); d != "" {
			if _, ok := byDomain[d]; ok {
				byDomain[d] = append(byDomain[d], account)
			}
		}
		return nil
	})
	if err != nil {
		// Without the list the bridge keeps reporting every account, as
		// before it got one: nothing is lost, only work is not saved.
		s.log.Error("could not list the accounts with registrations", "err", err)
		return
	}
	for _, d := range s.cfg.Domains {
		accounts := byDomain[d]
		list := NewID()
		for first := true; first || len(accounts) > 0; first = false {
			n := min(len(accounts), AccountChunk)
			chunk := &AccountList{List: list, Last: n == len(accounts), Accounts: accounts[:n]}
			accounts = accounts[n:]
			if err := s.send(ctx, Message(s.cfg.JID, d, chunk.Element())); err != nil {
				if !errors.Is(err, ErrNotConnected) {
					s.log.Warn("could not send the account list", "domain", d, "err", err)
				}
				return
			}
		}
	}
}

// accountChanged tells the account's bridge whether the account has
// registrations now (the engine's OnRegisteredChange).
func (s *Service) accountChanged(account string) {
	d := domainOf(account)
	if !s.cfg.AccountList || d == "" {
		return
	}
	s.accountsMu.Lock()
	defer s.accountsMu.Unlock()
	has, err := s.eng.HasRegistrations(account)
	if err != nil {
		// Keep the bridge reporting: a false "has" costs work, a false
		// "has not" would lose pushes.
		s.log.Error("could not read the account's registrations", "account", account, "err", err)
		has = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	// Not connected: the whole list goes on the next connection.
	if err := s.send(ctx, Message(s.cfg.JID, d, RegisteredChange{Account: account, Has: has}.Element())); err != nil && !errors.Is(err, ErrNotConnected) {
		s.log.Warn("could not send an account change", "account", account, "err", err)
	}
}
