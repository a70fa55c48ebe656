package engine

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/push2/push2/engine/stanza"
)

// Registry holds the profiles the engine can use, built-in and loaded,
// identified by URI. Readers take an immutable snapshot, so an evaluation
// that started on one version of a profile finishes on it even if a new
// version is swapped in meanwhile (DESIGN.md "Hot load").
type Registry struct {
	mu    sync.Mutex // serializes writers
	snap  atomic.Pointer[registrySnapshot]
	subs  []func([]ProfileInfo)
	subMu sync.Mutex
}

type registrySnapshot struct {
	match  map[string]registered[MatchProfile]
	send   map[string]registered[SendProfile]
	sorted []ProfileInfo
}

type registered[P any] struct {
	p      P
	source string
	ver    uint64 // unique per registration of a profile value: what changed on a swap
}

// profileVersions numbers every profile registration, across registries.
var profileVersions atomic.Uint64

// version returns the version of the profile registered under uri (kind
// 'm' for match, 's' for send), 0 if there is none. A registration parsed
// with a profile stays valid while its version is unchanged.
func (r *Registry) version(kind byte, uri string) uint64 {
	snap := r.snap.Load()
	if kind == 'm' {
		return snap.match[uri].ver
	}
	return snap.send[uri].ver
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{}
	r.snap.Store(&registrySnapshot{match: map[string]registered[MatchProfile]{}, send: map[string]registered[SendProfile]{}})
	return r
}

// Match returns the match profile for uri.
func (r *Registry) Match(uri string) (MatchProfile, bool) {
	p, ok := r.snap.Load().match[uri]
	return p.p, ok
}

// Send returns the send profile for namespace ns.
func (r *Registry) Send(ns string) (SendProfile, bool) {
	p, ok := r.snap.Load().send[ns]
	return p.p, ok
}

// Profiles lists every profile, sorted by kind then URI.
func (r *Registry) Profiles() []ProfileInfo {
	return append([]ProfileInfo(nil), r.snap.Load().sorted...)
}

// Features returns the disco#info features the engine advertises: the
// protocol namespace followed by every profile URI (push2.md "Discovering
// support").
func (r *Registry) Features() []string {
	s := r.snap.Load().sorted
	out := make([]string, 0, len(s)+1)
	out = append(out, stanza.NSPush2)
	for _, p := range s {
		// A URI may name a match and a send profile at once (the XEP-0357
		// pair); disco lists it once.
		if !slices.Contains(out, p.URI) {
			out = append(out, p.URI)
		}
	}
	return out
}

// Subscribe registers fn to be called with the new profile list after every
// change. fn runs synchronously after the swap and must not block for long.
func (r *Registry) Subscribe(fn func([]ProfileInfo)) {
	r.subMu.Lock()
	r.subs = append(r.subs, fn)
	r.subMu.Unlock()
}

// Update atomically applies a change: profiles in addMatch/addSend are added
// or replace the ones with the same ID, then the URIs in remove (of either
// kind) are removed. source describes where the added profiles come from.
func (r *Registry) Update(source string, addMatch []MatchProfile, addSend []SendProfile, remove []string) error {
	for _, p := range addMatch {
		if p.ID() == "" {
			return fmt.Errorf("registry: match profile with an empty ID from %s", source)
		}
	}
	for _, p := range addSend {
		if p.ID() == "" {
			return fmt.Errorf("registry: send profile with an empty ID from %s", source)
		}
	}
	r.apply(func(next *registrySnapshot) bool {
		for _, u := range remove {
			delete(next.match, u)
			delete(next.send, u)
		}
		for _, p := range addMatch {
			next.match[p.ID()] = registered[MatchProfile]{p, source, profileVersions.Add(1)}
		}
		for _, p := range addSend {
			next.send[p.ID()] = registered[SendProfile]{p, source, profileVersions.Add(1)}
		}
		return true
	})
	return nil
}

// Withdraw atomically removes these profile values, each only if it is
// still the one registered under its URI: a newer version that took the URI
// over in the meantime stays. It reports whether anything was removed.
func (r *Registry) Withdraw(match []MatchProfile, send []SendProfile) bool {
	removed := false
	r.apply(func(next *registrySnapshot) bool {
		for _, p := range match {
			if cur, ok := next.match[p.ID()]; ok && cur.p == p {
				delete(next.match, p.ID())
				removed = true
			}
		}
		for _, p := range send {
			if cur, ok := next.send[p.ID()]; ok && cur.p == p {
				delete(next.send, p.ID())
				removed = true
			}
		}
		return removed
	})
	return removed
}

// apply copies the current snapshot, lets change edit the copy, and unless
// change reports that nothing changed, publishes it and tells the
// subscribers. Writers are serialized; readers never wait.
func (r *Registry) apply(change func(next *registrySnapshot) bool) {
	r.mu.Lock()
	old := r.snap.Load()
	next := &registrySnapshot{
		match: make(map[string]registered[MatchProfile], len(old.match)),
		send:  make(map[string]registered[SendProfile], len(old.send)),
	}
	for k, v := range old.match {
		next.match[k] = v
	}
	for k, v := range old.send {
		next.send[k] = v
	}
	if !change(next) {
		r.mu.Unlock()
		return
	}
	for u, p := range next.match {
		next.sorted = append(next.sorted, ProfileInfo{URI: u, Kind: "match", Source: p.source})
	}
	for u, p := range next.send {
		next.sorted = append(next.sorted, ProfileInfo{URI: u, Kind: "send", Source: p.source})
	}
	sort.Slice(next.sorted, func(i, j int) bool {
		a, b := next.sorted[i], next.sorted[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.URI < b.URI
	})
	r.snap.Store(next)
	r.mu.Unlock()

	r.subMu.Lock()
	subs := append([]func([]ProfileInfo){}, r.subs...)
	r.subMu.Unlock()
	for _, fn := range subs {
		fn(append([]ProfileInfo(nil), next.sorted...))
	}
}

// Register adds the built-in profiles of set (source "builtin"), replacing
// profiles with the same IDs.
func (r *Registry) Register(set ProfileSet) error {
	return r.Update("builtin", set.Match, set.Send, nil)
}
