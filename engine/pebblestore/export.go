package pebblestore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/push2/push2/engine"
)

// Export: the records engine.Store has no iterator for, for moving a store
// to another kind (push2 store migrate). They are read from a consistent
// view only if push2d is stopped (OpenReadOnly takes the lock).

// splitKey cuts "prefix account\x00 id[\x00 rest]" into its parts.
func splitKey(k []byte, prefix string) (engine.RegKey, []byte, error) {
	rest := k[len(prefix):]
	acct, rest, ok := bytes.Cut(rest, []byte{0})
	if !ok {
		return engine.RegKey{}, nil, fmt.Errorf("store: malformed key %q", k)
	}
	id, tail, _ := bytes.Cut(rest, []byte{0})
	return engine.RegKey{Account: string(acct), ID: string(id)}, tail, nil
}

// ForEachMark calls fn for every dedupe mark: registration k got a push
// for the stanza named key at at.
func (s *Store) ForEachMark(fn func(k engine.RegKey, key string, at time.Time) error) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.scan([]byte(prefixMark), func(k, v []byte) error {
		rk, key, err := splitKey(k, prefixMark)
		if err != nil {
			return err
		}
		if len(v) != 8 {
			return fmt.Errorf("store: malformed dedupe mark %q", k)
		}
		return fn(rk, string(key), time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC())
	})
}

// ForEachRegState calls fn for every registration's error state.
func (s *Store) ForEachRegState(fn func(k engine.RegKey, st engine.RegState) error) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.scan([]byte(prefixState), func(k, v []byte) error {
		rk, _, err := splitKey(k, prefixState)
		if err != nil {
			return err
		}
		var st engine.RegState
		if err := json.Unmarshal(v, &st); err != nil {
			return fmt.Errorf("store: corrupt error state: %w", err)
		}
		return fn(rk, st)
	})
}

// ForEachDisabled calls fn for every disabled record, of every account.
func (s *Store) ForEachDisabled(fn func(k engine.RegKey, rec engine.DisabledRecord) error) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.scan([]byte(prefixDisabled), func(k, v []byte) error {
		rk, _, err := splitKey(k, prefixDisabled)
		if err != nil {
			return err
		}
		var rec engine.DisabledRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("store: corrupt disabled record: %w", err)
		}
		return fn(rk, rec)
	})
}

// Count counts the records of each kind.
func (s *Store) Count() (Counts, error) {
	if err := s.check(); err != nil {
		return Counts{}, err
	}
	return count(s.db)
}
