package engine

import (
	"context"
	"strings"

	"github.com/push2/push2/engine/stanza"
)

// The engine keeps each account's registrations parsed with the current
// profiles, so an event costs no XML parsing of registrations. The store is
// the truth; the cache is dropped for an account on each write and for all
// accounts on a profile swap (registrations are parsed again with the new
// profiles, see New).

// changing brackets a store write that changes the account's
// registrations: until the returned function is called, readers bypass the
// cache (they see whatever the store shows), and no list read before the
// write ends can be cached. Pebble makes a commit visible to readers a
// moment before Commit returns to the writer; without this a reader could
// cache, or be served, the old list in that moment.
func (e *Engine) changing(account string) (done func()) {
	e.mu.Lock()
	delete(e.cache, account)
	e.gen[account]++
	e.writing[account]++
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.cache, account)
		e.gen[account]++
		if e.writing[account]--; e.writing[account] == 0 {
			delete(e.writing, account)
		}
		e.mu.Unlock()
	}
}

// Registrations returns the account's registrations, oldest first, parsed
// with the current profiles. A stored registration that no longer parses
// (its profile was unloaded, say) is skipped and logged; it stays stored and
// comes back when the profile does. Parsing runs the profiles' Provision
// with ctx; if ctx ends meanwhile, Registrations returns ctx.Err() and
// caches nothing, so one abandoned request cannot hide registrations from
// the next.
func (e *Engine) Registrations(ctx context.Context, account string) ([]*Registration, error) {
	acct, err := bareJID(strings.TrimSpace(account))
	if err != nil {
		return nil, stanza.BadRequest("the account is not a valid JID")
	}
	return e.registrations(ctx, acct)
}

// registrations is Registrations for an account already in bare normalized
// form.
func (e *Engine) registrations(ctx context.Context, account string) ([]*Registration, error) {
	e.mu.Lock()
	regs, ok := e.cache[account]
	gen, genAll := e.gen[account], e.genAll
	e.mu.Unlock()
	// A write in progress empties the cache and, until it ends, keeps it
	// empty (see changing).
	if ok {
		return regs, nil
	}
	stored, err := e.store.Registrations(account)
	if err != nil {
		return nil, err
	}
	regs = make([]*Registration, 0, len(stored))
	for _, s := range stored {
		r, err := e.load(ctx, s)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			e.cfg.Logger.Warn("stored registration not usable with the loaded profiles", "account", s.Account, "id", s.ID, "err", err)
			continue
		}
		regs = append(regs, r)
	}
	e.mu.Lock()
	if e.gen[account] == gen && e.genAll == genAll && e.writing[account] == 0 {
		e.cache[account] = regs
	}
	e.mu.Unlock()
	return regs, nil
}

func (e *Engine) load(ctx context.Context, s StoredRegistration) (*Registration, error) {
	el, err := stanza.Parse([]byte(s.Enable))
	if err != nil {
		return nil, err
	}
	r, err := ParseEnable(ctx, e.registry, e.cfg.Limits, s.Account, s.ID, el)
	if err != nil {
		return nil, err
	}
	r.Created = s.Created
	r.Suspended = s.Suspended
	return r, nil
}
