package engine

import (
	"errors"
	"time"
)

// ErrStorageLow is wrapped by the error a store returns from
// PutRegistration when it is short of space (pebblestore: less free space
// on its filesystem than its configured minimum). Enable answers it with
// wait/resource-constraint, so the client tries again later; every other
// write (delivery bookkeeping, removals) goes on, so that the space left is
// spent on delivering the pushes of the registrations already stored.
var ErrStorageLow = errors.New("store: free space below the configured minimum")

// StoredRegistration is the persisted form of a Registration: the
// <enable/> bytes as received plus the identity and creation time. Parsing
// happens on load, with the same rules as at enable time.
type StoredRegistration struct {
	Account string    `json:"account"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Enable  string    `json:"enable"`
	// Suspended: the server disabled the account (Engine.SuspendAccount);
	// the registration is kept but gets no pushes.
	Suspended bool `json:"suspended,omitempty"`
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
// PostgreSQL) can replace the Pebble one (DESIGN.md "Scale"). Every
// implementation runs the conformance suite, engine/storetest, which checks
// the promises below; engine/pebblestore and engine/memstore are the two
// that ship.
//
// Implementations must be safe for concurrent use. "Durable" means the
// write survives a crash of the process once the method returns (a store
// kept in memory only, like memstore, makes no such claim). Account and
// registration id are non-empty and contain no NUL; a write with such a
// key is refused with an error. The callback of a ForEach… method may stop
// the iteration by returning an error, which the method returns. After
// Close, every method returns an error.
type Store interface {
	// PutRegistration stores r, replacing the registration with the same
	// account and id and clearing its error state and disabled record (a
	// fresh enable starts afresh), then removes the oldest registrations of
	// the account (by Created), with their dedupe marks and error states,
	// until at most max remain (max 0: no limit), r always staying. The
	// change is durable when PutRegistration returns, and atomic: either
	// all of it happened or none, also with respect to concurrent calls.
	// A store short of space may refuse it with an error wrapping
	// ErrStorageLow, storing nothing.
	PutRegistration(r StoredRegistration, max int) (evicted []RegKey, err error)
	// DeleteRegistration removes a registration with its dedupe marks and
	// error state, durably; it reports whether one existed.
	DeleteRegistration(k RegKey) (bool, error)
	// Registrations returns the account's registrations, oldest first.
	Registrations(account string) ([]StoredRegistration, error)
	// ForEachRegistration calls fn for every registration of every account,
	// each account's registrations one after the other.
	ForEachRegistration(fn func(StoredRegistration) error) error
	// RecordPush records that registration k got a push for the stanza
	// identified by keys (several names of the same stanza: the archive id,
	// the stanza id…) and puts entry in the outbox, atomically and durably.
	// It returns false, recording nothing, if any of the keys was recorded
	// before for k (marks are per registration). PruneMarks forgets old
	// records. Concurrent calls for the same stanza report first exactly
	// once, and first is reported only once the record is durable.
	RecordPush(k RegKey, keys []string, at time.Time, entry OutboxEntry) (first bool, err error)

	// PutOutbox replaces an outbox entry (a new attempt, a sent mark). sync
	// says whether the write must be durable before returning.
	PutOutbox(e OutboxEntry, sync bool) error
	// DeleteOutbox removes an entry; removing a missing one is not an error.
	DeleteOutbox(id string) error
	// ForEachOutbox calls fn once for every outbox entry, in no particular
	// order (the outbox orders them).
	ForEachOutbox(fn func(OutboxEntry) error) error

	// RegState and PutRegState keep a registration's delivery error
	// accounting. A missing state is the zero value; putting the zero value
	// deletes it.
	RegState(k RegKey) (RegState, error)
	PutRegState(k RegKey, st RegState) error
	// DisableRegistration removes a registration that keeps failing, with
	// its dedupe marks and error state, and records why, durably and
	// atomically, so the operator can see it.
	DisableRegistration(k RegKey, rec DisabledRecord) error
	// Disabled lists the account's registrations disabled by the engine.
	Disabled(account string) ([]DisabledRecord, error)
	// PruneMarks forgets the dedupe marks recorded before before and
	// returns how many; it changes nothing else.
	PruneMarks(before time.Time) (int, error)
	Close() error
}

// OutboxBatcher is a Store that can replace several outbox entries in one
// write (PutOutbox with sync false for each, the writes applied together
// or not at all). The outbox uses it, when the store has it, to record a
// batch of routing confirmations.
type OutboxBatcher interface {
	PutOutboxes(es []OutboxEntry) error
}
