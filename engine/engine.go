// Package engine is the Push 2.0 (urn:xmpp:push2:0) decision pipeline as a
// plain Go library: registrations (push2.md "Client registers to receive push
// notifications", "Client disables future pushes"), the profile interfaces
// and registry ("Match and send profiles"), filters and grace, priority,
// dedupe and the notification stanza. It has no network code, so any Go XMPP
// server can embed it; push2d is one host of it.
//
// The pipeline, in the order a stanza goes through it, one file per step:
//
//	registration.go   <enable/> parsed and validated into a Registration
//	enable.go         Enable, Disable, Remove: registrations stored and removed
//	account.go        DeleteAccount, SuspendAccount: the server's account lifecycle
//	facts.go          what the stanza is (important, archived, a call…), once per event
//	evaluate.go       Evaluate: the steps below for each registration of the account
//	match.go          the match profiles of each <match/>, in document order
//	filter.go         <filter/>: muted chats, mentions and replies
//	grace.go          <grace/>: another session of the user was active
//	notification.go   the send profile and the <notification/> message
//	dedupe.go         one push per registration and stanza, recorded with the outbox entry
//	outbox.go         durable delivery to the push service, with retries
//
// Around it: profile.go and registry.go (the profile interfaces and the
// set of loaded profiles), store.go (what a store must provide; packages
// memstore and pebblestore implement it, storetest checks them),
// regcache.go (parsed registrations per account), errors.go (any error as the
// stanza error a client gets), foreign.go (the one hook through which other
// push protocols register: EnableParser, used by profiles/xep0357 for
// XEP-0357 clients) and ping.go (the admin test push).
package engine

import (
	"log/slog"
	"time"

	"github.com/push2/push2/engine/stanza"
)

// Config holds the engine's operator settings.
// A zero field (also within Limits and Retry) takes its default from
// DefaultConfig.
type Config struct {
	Limits Limits
	// MaxRegistrations per account; the oldest is evicted when a new one
	// would exceed it (like mod_cloud_notify's push_max_devices).
	MaxRegistrations int
	// NotificationLimit is the largest notification stanza, in bytes, as
	// serialized. push2.md: 4096, "some implementations may wish to restrict
	// this even more". Values above 4096 are lowered to 4096.
	NotificationLimit int
	// DedupeRetention is how long the engine remembers that a registration
	// got a push for a stanza. Outbox.Run applies it, when it starts and
	// every SweepEvery.
	DedupeRetention time.Duration
	// SweepEvery is how often Outbox.Run runs the periodic sweeps (the
	// dedupe retention); default hourly. On a store several engines share
	// (SweepLeader: PostgreSQL) one instance, elected, runs them for all.
	SweepEvery time.Duration
	// RegistrationCache bounds the parsed registrations the engine keeps
	// in memory (an account without registrations counts as one); the
	// least recently used accounts are dropped first, and an account not
	// in the cache is read from the store and parsed again. A parsed
	// registration takes about 2 KB of heap.
	RegistrationCache int
	// Retry is the outbox's error policy.
	Retry  RetryPolicy
	Clock  func() time.Time
	Logger *slog.Logger
}

// Engine evaluates stanzas against registrations. It is safe for concurrent
// use.
type Engine struct {
	cfg      Config
	store    Store
	registry *Registry
	activity *activity
	outbox   *Outbox

	cache *regCache

	watchers accountWatchers // OnAccountChange
}

// New returns an engine on store with the profiles in registry.
func New(store Store, registry *Registry, cfg Config) *Engine {
	cfg.fill()
	e := &Engine{
		cfg:      cfg,
		store:    store,
		registry: registry,
		activity: newActivity(cfg.Limits.MaxGrace),
		cache:    newRegCache(cacheSize(store, cfg.RegistrationCache)),
	}
	e.outbox = newOutbox(store, cfg, e.disableRegistration)
	e.outbox.refresh = e.refreshEntry
	// A profile swap can change what Provision accepts and returns: the
	// registrations parsed with a profile that changed are parsed again,
	// lazily, with the new one.
	registry.Subscribe(func([]ProfileInfo) { e.cache.swapped(registry) })
	return e
}

// disableRegistration is the outbox's way to remove a registration that
// keeps failing: through the store, with the cache kept coherent.
func (e *Engine) disableRegistration(k RegKey, rec DisabledRecord) error {
	done := e.changing(k.Account)
	defer done()
	return e.store.DisableRegistration(k, rec)
}

// Outbox returns the engine's delivery queue. The host runs it
// (Outbox.Run) with a Sender that hands notifications to the server.
func (e *Engine) Outbox() *Outbox { return e.outbox }

// Disabled lists the account's registrations that the engine disabled
// because their push service kept failing, with the reason.
func (e *Engine) Disabled(account string) ([]DisabledRecord, error) {
	j, err := NormalizeJID(account)
	if err != nil {
		return nil, stanza.BadRequest("the account is not a valid JID")
	}
	return e.store.Disabled(j.Bare().String())
}

// Registry returns the engine's profile registry.
func (e *Engine) Registry() *Registry { return e.registry }

// Config returns the effective configuration.
func (e *Engine) Config() Config { return e.cfg }

// cacheSize is the registration cache's bound: none on a store several
// engines share (a SharedOutbox, such as PostgreSQL), where another
// instance may change an account's registrations and a cached list would
// be stale; every event then reads the store.
func cacheSize(store Store, max int) int {
	if _, shared := store.(SharedOutbox); shared {
		return 0
	}
	return max
}
