package engine

import "sync"

// Hosts that filter work before it reaches the engine (push2d tells the
// XMPP server's bridge which accounts have registrations, so that the
// server sends nothing for the others) follow the accounts whose
// registrations change: OnAccountChange, HasRegistrations and
// ForEachAccount.

// accountWatchers are the functions OnAccountChange registered.
type accountWatchers struct {
	mu  sync.RWMutex
	fns []func(account string)
}

// OnAccountChange calls fn after every store write that changed the
// account's registrations (an enable, a disable, a removal, an eviction, a
// registration disabled for failing, an account deleted, suspended or
// resumed), once the write is done, in the goroutine that made it: an
// enable's call comes before Enable returns. fn must not block for long; it
// may call HasRegistrations.
func (e *Engine) OnAccountChange(fn func(account string)) {
	e.watchers.mu.Lock()
	e.watchers.fns = append(e.watchers.fns, fn)
	e.watchers.mu.Unlock()
}

func (e *Engine) accountChanged(account string) {
	e.watchers.mu.RLock()
	fns := e.watchers.fns
	e.watchers.mu.RUnlock()
	for _, fn := range fns {
		fn(account)
	}
}

// HasRegistrations reports whether the account (bare, normalized) has a
// registration that can get pushes: stored and not suspended. It reads the
// store, not the parsed cache, so a registration whose profile is not
// loaded right now still counts.
func (e *Engine) HasRegistrations(account string) (bool, error) {
	regs, err := e.store.Registrations(account)
	if err != nil {
		return false, err
	}
	for _, r := range regs {
		if !r.Suspended {
			return true, nil
		}
	}
	return false, nil
}

// ForEachAccount calls fn once for every account HasRegistrations reports,
// in no particular order. It keeps no set of the accounts seen (at a
// million registrations that set was tens of megabytes on every bridge
// connection): the store gives each account's registrations one after the
// other (Store.ForEachRegistration).
func (e *Engine) ForEachAccount(fn func(account string) error) error {
	last := ""
	return e.store.ForEachRegistration(func(r StoredRegistration) error {
		if r.Suspended || r.Account == last {
			return nil
		}
		last = r.Account
		return fn(r.Account)
	})
}
