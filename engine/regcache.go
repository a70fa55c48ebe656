package engine

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"

	"github.com/push2/push2/engine/stanza"
)

// The engine keeps recently used accounts' registrations parsed with the
// current profiles, so an event costs no XML parsing of registrations. The
// store is the truth; the cache holds at most Config.RegistrationCache
// parsed registrations (least recently used accounts go first), is dropped
// for an account on each write to it, and on a profile swap only for the
// accounts whose registrations use a profile that changed (registrations
// are parsed again with the new profiles, see New). An account that is not
// cached costs one store read and the parse of its registrations: the cold
// path keeps nothing in memory but what it caches.

// regCache is the bounded cache of parsed registrations, by account.
type regCache struct {
	mu      sync.Mutex
	max     int // parsed registrations kept at most (an empty list counts 1)
	size    int
	entries map[string]*cacheEntry
	lru     cacheEntry // sentinel of the ring, most recently used first
	// A reader fills the cache only if no invalidation that concerns its
	// account happened since it started reading the store, so a stale list
	// never sticks: genAll counts profile swaps, stripes the writes of the
	// accounts hashing to each stripe (a write to another account of the
	// same stripe only costs a reader its fill).
	genAll  uint64
	stripes [cacheStripes]stripe
	seed    maphash.Seed
}

const cacheStripes = 1024

type stripe struct {
	gen     uint64
	writing int // writes in progress
}

type cacheEntry struct {
	account    string
	regs       []*Registration
	deps       []profileDep
	skipped    bool // a stored registration did not parse: any swap may fix it
	prev, next *cacheEntry
}

// profileDep is a profile a cached registration was parsed with: kind 'm'
// (match) or 's' (send), its URI and its version in the registry then.
type profileDep struct {
	kind byte
	uri  string
	ver  uint64
}

func newRegCache(max int) *regCache {
	c := &regCache{max: max, entries: map[string]*cacheEntry{}, seed: maphash.MakeSeed()}
	c.lru.prev, c.lru.next = &c.lru, &c.lru
	return c
}

func (c *regCache) stripe(account string) *stripe {
	return &c.stripes[maphash.String(c.seed, account)%cacheStripes]
}

// get returns the cached list and, on a miss, the generations a fill must
// find unchanged.
func (c *regCache) get(account string) (regs []*Registration, ok bool, gen, genAll uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if en, hit := c.entries[account]; hit {
		if c.lru.next != en {
			en.unlink()
			c.pushFront(en)
		}
		return en.regs, true, 0, 0
	}
	return nil, false, c.stripe(account).gen, c.genAll
}

// put caches regs for account unless an invalidation happened since get
// returned gen and genAll, evicting least recently used accounts to stay
// within max.
func (c *regCache) put(account string, regs []*Registration, deps []profileDep, skipped bool, gen, genAll uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stripe(account)
	if st.gen != gen || c.genAll != genAll || st.writing != 0 || c.max <= 0 {
		return
	}
	if old, ok := c.entries[account]; ok {
		c.remove(old)
	}
	en := &cacheEntry{account: account, regs: regs, deps: deps, skipped: skipped}
	c.entries[account] = en
	c.pushFront(en)
	c.size += cost(regs)
	for c.size > c.max && c.lru.prev != en {
		c.remove(c.lru.prev)
	}
}

func cost(regs []*Registration) int { return max(1, len(regs)) }

func (c *regCache) pushFront(en *cacheEntry) {
	en.prev, en.next = &c.lru, c.lru.next
	en.next.prev = en
	c.lru.next = en
}

func (en *cacheEntry) unlink() {
	en.prev.next, en.next.prev = en.next, en.prev
	en.prev, en.next = nil, nil
}

// remove drops an entry; c.mu is held.
func (c *regCache) remove(en *cacheEntry) {
	en.unlink()
	delete(c.entries, en.account)
	c.size -= cost(en.regs)
}

// drop removes account's entry and bumps its stripe's generation; with
// delta it also counts a write starting (+1) or ending (-1).
func (c *regCache) drop(account string, delta int) {
	c.mu.Lock()
	if en, ok := c.entries[account]; ok {
		c.remove(en)
	}
	st := c.stripe(account)
	st.gen++
	st.writing += delta
	c.mu.Unlock()
}

// swapped drops the entries parsed with a profile whose version in reg is
// no longer the one they were parsed with, and those with a registration
// that did not parse (the swap may have brought its profile).
func (c *regCache) swapped(reg *Registry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.genAll++
	for en := c.lru.next; en != &c.lru; {
		next := en.next
		stale := en.skipped
		for _, d := range en.deps {
			if stale {
				break
			}
			stale = reg.version(d.kind, d.uri) != d.ver
		}
		if stale {
			c.remove(en)
		}
		en = next
	}
}

// len returns the number of cached accounts and parsed registrations.
func (c *regCache) len() (accounts, registrations int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.size
}

// changing brackets a store write that changes the account's
// registrations: until the returned function is called, readers bypass the
// cache (they see whatever the store shows), and no list read before the
// write ends can be cached. Pebble makes a commit visible to readers a
// moment before Commit returns to the writer; without this a reader could
// cache, or be served, the old list in that moment.
func (e *Engine) changing(account string) (done func()) {
	e.cache.drop(account, +1)
	return func() {
		e.cache.drop(account, -1)
		e.accountChanged(account)
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

// CacheLen reports how many accounts, and parsed registrations, the
// registration cache holds (at most Config.RegistrationCache
// registrations).
func (e *Engine) CacheLen() (accounts, registrations int) { return e.cache.len() }

// registrations is Registrations for an account already in bare normalized
// form.
func (e *Engine) registrations(ctx context.Context, account string) ([]*Registration, error) {
	regs, ok, gen, genAll := e.cache.get(account)
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
	var deps []profileDep
	skipped := false
	for _, s := range stored {
		r, err := e.load(ctx, s)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			e.cfg.Logger.Warn("stored registration not usable with the loaded profiles", "account", s.Account, "id", s.ID, "err", err)
			skipped = true
			continue
		}
		regs = append(regs, r)
		deps = e.appendDeps(deps, r)
	}
	e.cache.put(account, regs, deps, skipped, gen, genAll)
	return regs, nil
}

// appendDeps adds the profiles r was parsed with, at their current
// versions. A version read here may already be newer than the one r was
// parsed with; the swap that made it bumped genAll, so put refuses the
// fill anyway.
func (e *Engine) appendDeps(deps []profileDep, r *Registration) []profileDep {
	add := func(kind byte, uri string) {
		for _, d := range deps {
			if d.kind == kind && d.uri == uri {
				return
			}
		}
		deps = append(deps, profileDep{kind, uri, e.registry.version(kind, uri)})
	}
	if r.Enable != nil && r.Enable.Name.Space != stanza.NSPush2 {
		add('s', r.Enable.Name.Space) // the EnableParser of a foreign protocol
	}
	for _, m := range r.Matches {
		add('m', m.Profile)
		add('s', m.SendNS)
	}
	return deps
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
