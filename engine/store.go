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

// OutboxEntry is a notification accepted for delivery. It stays in the
// outbox until it is known delivered (sent, and no error came back within
// the error window) or given up on.
type OutboxEntry struct {
	ID       string    `json:"id"` // the notification's message id
	Account  string    `json:"account"`
	Reg      string    `json:"registration"`
	To       string    `json:"to"`
	Stanza   string    `json:"stanza"` // the serialized <message/>
	Created  time.Time `json:"created"`
	Attempts int       `json:"attempts"`      // sends so far
	Due      time.Time `json:"due"`           // when to send next (pending entries)
	SentAt   time.Time `json:"sent,omitzero"` // zero while pending
	LastErr  string    `json:"last_error,omitempty"`
}

// Key returns the entry's registration.
func (e OutboxEntry) Key() RegKey { return RegKey{Account: e.Account, ID: e.Reg} }

// RegState is a registration's delivery error accounting: failures since
// the last notification known to be delivered.
type RegState struct {
	Errors        int       `json:"errors"`
	FirstError    time.Time `json:"first_error,omitzero"`
	LastCondition string    `json:"last_condition,omitempty"`
}

// DisabledRecord says why the engine removed a registration.
type DisabledRecord struct {
	Account       string    `json:"account"`
	ID            string    `json:"id"`
	At            time.Time `json:"at"`
	Reason        string    `json:"reason"`
	Errors        int       `json:"errors"`
	FirstError    time.Time `json:"first_error"`
	LastCondition string    `json:"last_condition"`
	Service       string    `json:"service"`
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
	// RecordPush records that registration k got a push for the stanza
	// identified by keys (several names of the same stanza: the archive id,
	// the stanza id…) and puts entry in the outbox, atomically and durably.
	// It returns false, recording nothing, if any of the keys was recorded
	// before for k. Records older than the retention may be forgotten.
	RecordPush(k RegKey, keys []string, at time.Time, entry OutboxEntry) (first bool, err error)

	// PutOutbox replaces an outbox entry (a new attempt, a sent mark). sync
	// says whether the write must be durable before returning.
	PutOutbox(e OutboxEntry, sync bool) error
	// DeleteOutbox removes an entry; removing a missing one is not an error.
	DeleteOutbox(id string) error
	// ForEachOutbox calls fn for every outbox entry.
	ForEachOutbox(fn func(OutboxEntry) error) error

	// RegState and PutRegState keep a registration's delivery error
	// accounting. A missing state is the zero value.
	RegState(k RegKey) (RegState, error)
	PutRegState(k RegKey, st RegState) error
	// DisableRegistration removes a registration that keeps failing and
	// records why, durably, so the operator can see it.
	DisableRegistration(k RegKey, rec DisabledRecord) error
	// Disabled lists the account's registrations disabled by the engine.
	Disabled(account string) ([]DisabledRecord, error)
	// PruneMarks forgets push records older than before.
	PruneMarks(before time.Time) (int, error)
	Close() error
}
