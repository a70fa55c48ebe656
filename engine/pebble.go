package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// Key layout. Account JIDs and registration ids cannot contain NUL (JIDs
// forbid it; ids come from JIDs' resourceparts or SASL2 client ids, which the
// bridge validates), so NUL separates the parts.
//
//	r\x00<account>\x00<id>          → JSON StoredRegistration
//	m\x00<account>\x00<id>\x00<key> → 8-byte big-endian unix nanoseconds
//	o\x00<notification id>         → JSON OutboxEntry
//	s\x00<account>\x00<id>          → JSON RegState
//	x\x00<account>\x00<id>          → JSON DisabledRecord
const (
	prefixReg      = "r\x00"
	prefixMark     = "m\x00"
	prefixOutbox   = "o\x00"
	prefixState    = "s\x00"
	prefixDisabled = "x\x00"
)

// PebbleStore is the Store on a local Pebble database.
type PebbleStore struct {
	db *pebble.DB
	// mu serializes read-modify-write sequences (eviction, dedupe marks) so
	// they are atomic with respect to each other within this process. Pebble
	// batches make each sequence's writes atomic on disk.
	mu sync.Mutex
}

var _ Store = (*PebbleStore)(nil)

// OpenPebble opens (or creates) the store in dir.
func OpenPebble(dir string) (*PebbleStore, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return &PebbleStore{db: db}, nil
}

// OpenPebbleReadOnly opens an existing store for reading only (the push2
// CLI's inspection). Pebble locks the directory, so this fails while push2d
// has the store open.
func OpenPebbleReadOnly(dir string) (*PebbleStore, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quietLogger{}, ReadOnly: true, ErrorIfNotExists: true})
	if err != nil {
		return nil, fmt.Errorf("store: open %s read-only: %w", dir, err)
	}
	return &PebbleStore{db: db}, nil
}

// quietLogger drops Pebble's informational chatter; fatal errors still stop
// the process, as Pebble requires.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Fatalf(format string, a ...any) { pebble.DefaultLogger.Fatalf(format, a...) }

func regKey(account, id string) []byte {
	return []byte(prefixReg + account + "\x00" + id)
}

func markPrefix(k RegKey) []byte {
	return []byte(prefixMark + k.Account + "\x00" + k.ID + "\x00")
}

func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func (s *PebbleStore) scan(prefix []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}

func validKeyPart(s string) error {
	if s == "" || bytes.IndexByte([]byte(s), 0) >= 0 {
		return errors.New("store: account and id must be non-empty and contain no NUL")
	}
	return nil
}

// PutRegistration implements Store.
func (s *PebbleStore) PutRegistration(r StoredRegistration, max int) ([]RegKey, error) {
	if err := errors.Join(validKeyPart(r.Account), validKeyPart(r.ID)); err != nil {
		return nil, err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	existing, err := s.registrations(r.Account)
	if err != nil {
		return nil, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Set(regKey(r.Account, r.ID), v, nil); err != nil {
		return nil, err
	}
	// A fresh enable starts a fresh error account.
	b.Delete([]byte(prefixDisabled+r.Account+"\x00"+r.ID), nil)
	b.Delete([]byte(prefixState+r.Account+"\x00"+r.ID), nil)
	var others []StoredRegistration
	for _, e := range existing {
		if e.ID != r.ID {
			others = append(others, e)
		}
	}
	var evicted []RegKey
	if max > 0 {
		for len(others)+1 > max {
			old := others[0] // oldest first
			others = others[1:]
			if err := b.Delete(regKey(old.Account, old.ID), nil); err != nil {
				return nil, err
			}
			k := RegKey{old.Account, old.ID}
			if err := b.DeleteRange(markPrefix(k), prefixEnd(markPrefix(k)), nil); err != nil {
				return nil, err
			}
			evicted = append(evicted, k)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("store: commit registration: %w", err)
	}
	return evicted, nil
}

// DeleteRegistration implements Store.
func (s *PebbleStore) DeleteRegistration(k RegKey) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, closer, err := s.db.Get(regKey(k.Account, k.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.Delete(regKey(k.Account, k.ID), nil); err != nil {
		return false, err
	}
	if err := b.DeleteRange(markPrefix(k), prefixEnd(markPrefix(k)), nil); err != nil {
		return false, err
	}
	return true, b.Commit(pebble.Sync)
}

// Registrations implements Store.
func (s *PebbleStore) Registrations(account string) ([]StoredRegistration, error) {
	return s.registrations(account)
}

func (s *PebbleStore) registrations(account string) ([]StoredRegistration, error) {
	var out []StoredRegistration
	err := s.scan([]byte(prefixReg+account+"\x00"), func(_, v []byte) error {
		var r StoredRegistration
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("store: corrupt registration record: %w", err)
		}
		out = append(out, r)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, err
}

// ForEachRegistration implements Store.
func (s *PebbleStore) ForEachRegistration(fn func(StoredRegistration) error) error {
	return s.scan([]byte(prefixReg), func(_, v []byte) error {
		var r StoredRegistration
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("store: corrupt registration record: %w", err)
		}
		return fn(r)
	})
}

// RecordPush implements Store. Marks and the outbox entry go in one synced
// batch: after a crash either both are there (the push will be delivered)
// or neither (the stanza will be pushed when a trigger reports it again).
func (s *PebbleStore) RecordPush(k RegKey, keys []string, at time.Time, entry OutboxEntry) (bool, error) {
	v, err := json.Marshal(entry)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := markPrefix(k)
	for _, key := range keys {
		_, closer, err := s.db.Get(append(p[:len(p):len(p)], key...))
		if err == nil {
			closer.Close()
			return false, nil
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return false, err
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(at.UnixNano()))
	for _, key := range keys {
		if err := b.Set(append(p[:len(p):len(p)], key...), ts[:], nil); err != nil {
			return false, err
		}
	}
	if err := b.Set([]byte(prefixOutbox+entry.ID), v, nil); err != nil {
		return false, err
	}
	return true, b.Commit(pebble.Sync)
}

// PutOutbox implements Store.
func (s *PebbleStore) PutOutbox(e OutboxEntry, sync bool) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	return s.db.Set([]byte(prefixOutbox+e.ID), v, opt)
}

// DeleteOutbox implements Store.
func (s *PebbleStore) DeleteOutbox(id string) error {
	return s.db.Delete([]byte(prefixOutbox+id), pebble.NoSync)
}

// ForEachOutbox implements Store.
func (s *PebbleStore) ForEachOutbox(fn func(OutboxEntry) error) error {
	return s.scan([]byte(prefixOutbox), func(_, v []byte) error {
		var e OutboxEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("store: corrupt outbox record: %w", err)
		}
		return fn(e)
	})
}

// RegState implements Store.
func (s *PebbleStore) RegState(k RegKey) (RegState, error) {
	var st RegState
	v, closer, err := s.db.Get([]byte(prefixState + k.Account + "\x00" + k.ID))
	if errors.Is(err, pebble.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer closer.Close()
	return st, json.Unmarshal(v, &st)
}

// PutRegState implements Store.
func (s *PebbleStore) PutRegState(k RegKey, st RegState) error {
	key := []byte(prefixState + k.Account + "\x00" + k.ID)
	if st == (RegState{}) {
		return s.db.Delete(key, pebble.NoSync)
	}
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.db.Set(key, v, pebble.Sync)
}

// DisableRegistration implements Store.
func (s *PebbleStore) DisableRegistration(k RegKey, rec DisabledRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	b.Delete(regKey(k.Account, k.ID), nil)
	b.DeleteRange(markPrefix(k), prefixEnd(markPrefix(k)), nil)
	b.Delete([]byte(prefixState+k.Account+"\x00"+k.ID), nil)
	if err := b.Set([]byte(prefixDisabled+k.Account+"\x00"+k.ID), v, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// Disabled implements Store.
func (s *PebbleStore) Disabled(account string) ([]DisabledRecord, error) {
	var out []DisabledRecord
	err := s.scan([]byte(prefixDisabled+account+"\x00"), func(_, v []byte) error {
		var r DisabledRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// PruneMarks implements Store.
func (s *PebbleStore) PruneMarks(before time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	n := 0
	cut := uint64(before.UnixNano())
	err := s.scan([]byte(prefixMark), func(k, v []byte) error {
		if len(v) == 8 && binary.BigEndian.Uint64(v) < cut {
			n++
			return b.Delete(k, nil)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, b.Commit(pebble.NoSync)
}

// Close implements Store.
func (s *PebbleStore) Close() error { return s.db.Close() }
