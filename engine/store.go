package engine

import (
	"time"
)

// StoredRegistration is the persisted form of a Registration: the
// <enable/> bytes as received plus the identity and creation time. Parsing
// happens on load, with the same rules as at enable time.
type StoredRegistration struct {
	Account string    `json:"account"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Enable  string    `json:"enable"`
}

// Store persists registrations and push bookkeeping. The engine only uses
// this interface, so a store shared by several push2d instances (say,
// PostgreSQL) can replace the Pebble one (DESIGN.md "Scale").
//
// Implementations must be safe for concurrent use.
type Store interface {
	// PutRegistration stores r, replacing the registration with the same
	// account and id, then removes the oldest registrations of the account
	// (by Created) until at most max remain, r always staying. The change
	// is durable (synced) when PutRegistration returns, and atomic: either
	// all of it happened or none.
	PutRegistration(r StoredRegistration, max int) (evicted []RegKey, err error)
	// DeleteRegistration removes a registration durably; it reports whether
	// one existed.
	DeleteRegistration(k RegKey) (bool, error)
	// Registrations returns the account's registrations, oldest first.
	Registrations(account string) ([]StoredRegistration, error)
	// ForEachRegistration calls fn for every registration of every account.
	ForEachRegistration(fn func(StoredRegistration) error) error
	// MarkPushed records that registration k got a push for the stanza
	// identified by keys (several names of the same stanza: the archive id,
	// the stanza id…). It returns false, recording nothing, if any of the
	// keys was recorded before for k. Records older than the store's
	// retention may be forgotten.
	MarkPushed(k RegKey, keys []string, at time.Time) (first bool, err error)
	// PruneMarks forgets push records older than before.
	PruneMarks(before time.Time) (int, error)
	Close() error
}
