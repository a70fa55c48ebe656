// Package memstore is an engine.Store in memory, for tests, simulations and
// embedders that keep registrations elsewhere. It keeps every promise of the
// Store interface except durability: what it holds is gone when the process
// ends ("durable" below means "visible to every later call").
package memstore

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/engine"
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("memstore: closed")

// Store is an in-memory engine.Store. The zero value is not usable; call
// New.
type Store struct {
	mu       sync.Mutex
	closed   bool
	regs     map[string]map[string]engine.StoredRegistration // account → id → registration
	marks    map[engine.RegKey]map[string]time.Time          // registration → dedupe key → when
	outbox   map[string]engine.OutboxEntry
	state    map[engine.RegKey]engine.RegState
	disabled map[engine.RegKey]engine.DisabledRecord
}

var _ engine.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{
		regs:     map[string]map[string]engine.StoredRegistration{},
		marks:    map[engine.RegKey]map[string]time.Time{},
		outbox:   map[string]engine.OutboxEntry{},
		state:    map[engine.RegKey]engine.RegState{},
		disabled: map[engine.RegKey]engine.DisabledRecord{},
	}
}

// lock takes the store's lock; the caller must unlock it even on error.
func (s *Store) lock() error {
	s.mu.Lock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

func validKey(k engine.RegKey) error {
	if k.Account == "" || k.ID == "" || strings.IndexByte(k.Account+k.ID, 0) >= 0 {
		return errors.New("memstore: account and id must be non-empty and contain no NUL")
	}
	return nil
}

// sorted returns the account's registrations oldest first (by Created, then
// id, so that the order is stable).
func (s *Store) sorted(account string) []engine.StoredRegistration {
	out := make([]engine.StoredRegistration, 0, len(s.regs[account]))
	for _, r := range s.regs[account] {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// forget removes everything kept for k except its disabled record.
func (s *Store) forget(k engine.RegKey) {
	if m := s.regs[k.Account]; m != nil {
		delete(m, k.ID)
		if len(m) == 0 {
			delete(s.regs, k.Account)
		}
	}
	delete(s.marks, k)
	delete(s.state, k)
}

// PutRegistration implements engine.Store.
func (s *Store) PutRegistration(r engine.StoredRegistration, max int) ([]engine.RegKey, error) {
	defer s.mu.Unlock()
	key := engine.RegKey{Account: r.Account, ID: r.ID}
	if err := errors.Join(s.lock(), validKey(key)); err != nil {
		return nil, err
	}
	var evicted []engine.RegKey
	others := s.sorted(r.Account)
	others = slicesDelete(others, r.ID)
	for max > 0 && len(others)+1 > max {
		old := engine.RegKey{Account: others[0].Account, ID: others[0].ID}
		others = others[1:]
		s.forget(old)
		evicted = append(evicted, old)
	}
	if s.regs[r.Account] == nil {
		s.regs[r.Account] = map[string]engine.StoredRegistration{}
	}
	s.regs[r.Account][r.ID] = r
	delete(s.disabled, key)
	delete(s.state, key)
	return evicted, nil
}

func slicesDelete(regs []engine.StoredRegistration, id string) []engine.StoredRegistration {
	out := regs[:0]
	for _, r := range regs {
		if r.ID != id {
			out = append(out, r)
		}
	}
	return out
}

// DeleteRegistration implements engine.Store.
func (s *Store) DeleteRegistration(k engine.RegKey) (bool, error) {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return false, err
	}
	_, ok := s.regs[k.Account][k.ID]
	if ok {
		s.forget(k)
	}
	return ok, nil
}

// Registrations implements engine.Store.
func (s *Store) Registrations(account string) ([]engine.StoredRegistration, error) {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return nil, err
	}
	if len(s.regs[account]) == 0 {
		return nil, nil
	}
	return s.sorted(account), nil
}

// ForEachRegistration implements engine.Store. fn runs on a snapshot, so it
// may call the store.
func (s *Store) ForEachRegistration(fn func(engine.StoredRegistration) error) error {
	if err := s.lock(); err != nil {
		s.mu.Unlock()
		return err
	}
	accounts := make([]string, 0, len(s.regs))
	for a := range s.regs {
		accounts = append(accounts, a)
	}
	sort.Strings(accounts)
	var all []engine.StoredRegistration
	for _, a := range accounts {
		all = append(all, s.sorted(a)...)
	}
	s.mu.Unlock()
	for _, r := range all {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// RecordPush implements engine.Store.
func (s *Store) RecordPush(k engine.RegKey, keys []string, at time.Time, entry engine.OutboxEntry) (bool, error) {
	defer s.mu.Unlock()
	if err := errors.Join(s.lock(), validKey(k)); err != nil {
		return false, err
	}
	m := s.marks[k]
	for _, key := range keys {
		if _, ok := m[key]; ok {
			return false, nil
		}
	}
	if m == nil {
		m = map[string]time.Time{}
		s.marks[k] = m
	}
	for _, key := range keys {
		m[key] = at
	}
	s.outbox[entry.ID] = entry
	return true, nil
}

// PutOutbox implements engine.Store.
func (s *Store) PutOutbox(e engine.OutboxEntry, _ bool) error {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return err
	}
	s.outbox[e.ID] = e
	return nil
}

// DeleteOutbox implements engine.Store.
func (s *Store) DeleteOutbox(id string) error {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return err
	}
	delete(s.outbox, id)
	return nil
}

// ForEachOutbox implements engine.Store, in notification id order. fn runs
// on a snapshot, so it may call the store.
func (s *Store) ForEachOutbox(fn func(engine.OutboxEntry) error) error {
	if err := s.lock(); err != nil {
		s.mu.Unlock()
		return err
	}
	all := make([]engine.OutboxEntry, 0, len(s.outbox))
	for _, e := range s.outbox {
		all = append(all, e)
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	for _, e := range all {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// RegState implements engine.Store.
func (s *Store) RegState(k engine.RegKey) (engine.RegState, error) {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return engine.RegState{}, err
	}
	return s.state[k], nil
}

// PutRegState implements engine.Store.
func (s *Store) PutRegState(k engine.RegKey, st engine.RegState) error {
	defer s.mu.Unlock()
	if err := errors.Join(s.lock(), validKey(k)); err != nil {
		return err
	}
	if st == (engine.RegState{}) {
		delete(s.state, k)
	} else {
		s.state[k] = st
	}
	return nil
}

// DisableRegistration implements engine.Store.
func (s *Store) DisableRegistration(k engine.RegKey, rec engine.DisabledRecord) error {
	defer s.mu.Unlock()
	if err := errors.Join(s.lock(), validKey(k)); err != nil {
		return err
	}
	s.forget(k)
	s.disabled[k] = rec
	return nil
}

// Disabled implements engine.Store, in registration id order.
func (s *Store) Disabled(account string) ([]engine.DisabledRecord, error) {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return nil, err
	}
	var out []engine.DisabledRecord
	for k, r := range s.disabled {
		if k.Account == account {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// PruneMarks implements engine.Store.
func (s *Store) PruneMarks(before time.Time) (int, error) {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return 0, err
	}
	n := 0
	for k, m := range s.marks {
		for key, at := range m {
			if at.Before(before) {
				delete(m, key)
				n++
			}
		}
		if len(m) == 0 {
			delete(s.marks, k)
		}
	}
	return n, nil
}

// Close implements engine.Store: it empties the store. Calls after the
// first return ErrClosed.
func (s *Store) Close() error {
	defer s.mu.Unlock()
	if err := s.lock(); err != nil {
		return err
	}
	s.closed = true
	s.regs, s.marks, s.outbox, s.state, s.disabled = nil, nil, nil, nil, nil
	return nil
}
