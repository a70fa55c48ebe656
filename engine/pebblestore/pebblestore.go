// Package pebblestore is the engine.Store on a local Pebble database: the
// embedded default, for one push2d serving one server (DESIGN.md "Scale").
//
// The store holds the registrations' secrets (Web Push auth secrets, JWT
// signing keys, client tokens) in clear: Open creates its directory 0700 and
// every file 0600 whatever the umask, and refuses a store other users can
// read (ErrExposed).
package pebblestore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/push2/push2/engine"
)

// Key layout. Account JIDs and registration ids cannot contain NUL (JIDs
// forbid it; ids come from JIDs' resourceparts or SASL2 client ids, which the
// bridge validates, and PutRegistration refuses them), so NUL separates the
// parts.
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

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("store: closed")

// Store is the engine.Store on a Pebble database.
type Store struct {
	db *pebble.DB
	// accounts serialize the read-modify-write sequences of one account's
	// registrations (eviction, removal) so they are atomic with respect to
	// each other within this process; accounts hashing to different
	// stripes go on in parallel, each with its own synced commit (which
	// Pebble's commit pipeline groups). Pebble batches make each sequence's
	// writes atomic on disk.
	accounts [64]sync.Mutex
	seed     maphash.Seed
	// mu guards pending.
	mu sync.Mutex
	// pending holds the dedupe marks of RecordPush batches that are being
	// committed, guarded by mu; each maps to a channel closed once that
	// commit has finished (durable or failed). See RecordPush.
	pending map[string]chan struct{}
	// life is held shared by every RecordPush across its commit, which runs
	// outside mu, and exclusively by Close, so that Close waits for commits
	// in flight instead of closing the database under them.
	life   sync.RWMutex
	closed atomic.Bool
	// commits feeds the committer goroutine (see committer); closed by
	// Close once no RecordPush is in flight. committed is closed when the
	// committer has returned.
	commits   chan *pushCommit
	committed chan struct{}
	syncs     atomic.Uint64 // group commits so far

	dir      string
	writable bool        // opened by OpenWith: Close writes the shutdown record
	space    *spaceWatch // nil: no minimum
}

// pushCommit is one RecordPush's writes, handed to the committer.
type pushCommit struct {
	marks    [][]byte
	ts       []byte
	outKey   []byte
	outValue []byte
	done     chan error // receives the outcome of the sync that held the writes
}

// maxGroup bounds the writes of one group commit, so that one sync's
// latency stays bounded under any backlog.
const maxGroup = 1024

func newStore(db *pebble.DB) *Store {
	s := &Store{db: db, pending: map[string]chan struct{}{}, seed: maphash.MakeSeed(),
		commits: make(chan *pushCommit, maxGroup), committed: make(chan struct{})}
	go s.committer()
	return s
}

// committer is the group commit of RecordPush: it takes every push record
// queued while the previous sync ran (up to maxGroup), writes them in one
// Pebble batch with one sync, and only then tells each caller the outcome.
// One notification per synced batch is what bounded durable pushes to the
// disk's sync rate; this way the sync rate bounds groups instead.
func (s *Store) committer() {
	defer close(s.committed)
	group := make([]*pushCommit, 0, maxGroup)
	for c := range s.commits {
		group = append(group[:0], c)
	drain:
		for len(group) < maxGroup {
			select {
			case c, ok := <-s.commits:
				if !ok {
					break drain
				}
				group = append(group, c)
			default:
				break drain
			}
		}
		err := s.commitGroup(group)
		s.syncs.Add(1)
		for _, c := range group {
			c.done <- err
		}
	}
}

// PushSyncs returns how many synced batches RecordPush has used so far:
// with Pebble's own count of pushes, the size of the groups.
func (s *Store) PushSyncs() uint64 { return s.syncs.Load() }

func (s *Store) commitGroup(group []*pushCommit) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, c := range group {
		for _, m := range c.marks {
			if err := b.Set(m, c.ts, nil); err != nil {
				return err
			}
		}
		if err := b.Set(c.outKey, c.outValue, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store: commit push record: %w", err)
	}
	return nil
}

var _ engine.Store = (*Store)(nil)

// marshal is json.Marshal without HTML escaping: registrations and outbox
// entries hold XML, whose every < and > json.Marshal would write as six
// bytes (\u003c), a third more bytes for Pebble to write, flush and
// compact per push. Any JSON decoder reads both forms.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// lockAccount takes account's stripe lock for a read-modify-write, and
// holds off Close until unlock is called; it fails once the store is
// closed.
func (s *Store) lockAccount(account string) (unlock func(), err error) {
	s.life.RLock()
	if err := s.check(); err != nil {
		s.life.RUnlock()
		return nil, err
	}
	m := &s.accounts[maphash.String(s.seed, account)%uint64(len(s.accounts))]
	m.Lock()
	return func() { m.Unlock(); s.life.RUnlock() }, nil
}

// Options are the settings of OpenWith. The zero value is Open's.
type Options struct {
	// MinFreeBytes: while the store's filesystem has less free space than
	// this (for the user push2d runs as), PutRegistration refuses with an
	// error wrapping engine.ErrStorageLow; every other write goes on. 0: no
	// minimum.
	MinFreeBytes uint64
	// Repair opens a damaged store (see Report), keeping what is readable
	// and setting aside what is not; without it Open refuses one with a
	// *CorruptError.
	Repair bool
	// OnFatal is called, once, when Pebble reports an error it cannot go
	// on from (a failed WAL or MANIFEST write or sync: a full disk, an I/O
	// error). Such a write was not done and Pebble cannot take another, so
	// OnFatal should stop the process; if it returns, the goroutine that
	// hit the error blocks for good rather than report the write as done.
	// nil: print the error in one line to standard error and exit with
	// status 1.
	OnFatal func(error)
	// Logger gets the store's warnings: free space crossing MinFreeBytes,
	// Pebble's background errors and write stalls. nil: none.
	Logger *slog.Logger
	// FS replaces the operating system's file system (tests inject faults
	// with it).
	FS vfs.FS
}

// Open opens (or creates) the store in dir. It refuses a directory that
// other users can read (see ErrExposed) and a damaged store (see
// CorruptError).
func Open(dir string) (*Store, error) {
	s, _, err := OpenWith(dir, Options{})
	return s, err
}

// OpenWith opens (or creates) the store in dir with o, and reports what it
// holds (and, with o.Repair, what the repair did). A damaged store is
// refused with a *CorruptError whose Report says what is wrong, unless
// o.Repair is set.
func OpenWith(dir string, o Options) (*Store, *Report, error) {
	if err := prepareDir(dir, true); err != nil {
		return nil, nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	rep, err := inspect(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if rep.Damaged() {
		if !o.Repair || rep.Unrepairable != "" {
			return nil, rep, &CorruptError{Report: rep}
		}
		if err := repair(rep); err != nil {
			return nil, rep, fmt.Errorf("store: repair %s: %w", dir, err)
		}
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	f := &fatal{onFatal: o.OnFatal}
	db, err := pebble.Open(dir, &pebble.Options{
		FS:            privateFS{o.FS},
		Logger:        f,
		EventListener: eventListener(o.Logger),
		Levels:        levels(),
		// The block cache stays Pebble's default 8 MiB: a larger one
		// costs more resident memory than it saves (BenchmarkMillion).
	})
	if err != nil {
		return nil, rep, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if err := removeShutdownRecord(dir); err != nil {
		db.Close()
		return nil, rep, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if !rep.Counted || len(rep.Repaired) > 0 {
		if rep.Recovered, err = count(db); err != nil {
			db.Close()
			return nil, rep, fmt.Errorf("store: open %s: %w", dir, err)
		}
		rep.Counted = true
	}
	s := newStore(db)
	s.dir, s.writable = dir, true
	s.space = newSpaceWatch(o.FS, dir, o.MinFreeBytes, o.Logger)
	return s, rep, nil
}

// levels gives every level of the LSM a bloom filter. Each push looks up
// its dedupe marks, which are almost never there (a stanza is new): without
// a filter every such Get read and decompressed a block of each table it
// might be in, the largest cost of a durable push; with one, a miss costs a
// few hashes per table. 10 bits per key: about 1% false positives.
func levels() []pebble.LevelOptions {
	l := make([]pebble.LevelOptions, 7)
	for i := range l {
		l[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return l
}

// OpenReadOnly opens an existing store for reading only (the push2 CLI's
// inspection). Pebble locks the directory, so this fails while push2d has
// the store open.
func OpenReadOnly(dir string) (*Store, error) {
	if err := prepareDir(dir, false); err != nil {
		return nil, fmt.Errorf("store: open %s read-only: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "CURRENT")); err != nil {
		// Pebble would take the directory for a new database.
		return nil, fmt.Errorf("store: open %s read-only: %w (run push2 store check -dir %s)", dir, err, dir)
	}
	db, err := pebble.Open(dir, &pebble.Options{FS: privateFS{vfs.Default}, Logger: &fatal{}, ReadOnly: true, ErrorIfNotExists: true})
	if err != nil {
		return nil, fmt.Errorf("store: open %s read-only: %w", dir, err)
	}
	return newStore(db), nil
}

func regKey(k engine.RegKey) []byte      { return []byte(prefixReg + k.Account + "\x00" + k.ID) }
func stateKey(k engine.RegKey) []byte    { return []byte(prefixState + k.Account + "\x00" + k.ID) }
func disabledKey(k engine.RegKey) []byte { return []byte(prefixDisabled + k.Account + "\x00" + k.ID) }
func markPrefix(k engine.RegKey) []byte {
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

func (s *Store) scan(prefix []byte, fn func(k, v []byte) error) error {
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

// scanJSON calls fn with every JSON record under prefix, decoded as T.
func scanJSON[T any](s *Store, prefix, what string, fn func(T) error) error {
	return s.scan([]byte(prefix), func(_, v []byte) error {
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("store: corrupt %s record: %w", what, err)
		}
		return fn(r)
	})
}

func (s *Store) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

func validKey(k engine.RegKey) error {
	if k.Account == "" || k.ID == "" || bytes.IndexByte([]byte(k.Account+k.ID), 0) >= 0 {
		return errors.New("store: account and id must be non-empty and contain no NUL")
	}
	return nil
}

// forget adds to b the deletion of everything kept for registration k
// except its disabled record: the registration, its dedupe marks and its
// error state.
//
// The marks go one by one, not with a range deletion: every range
// tombstone in the memtable is fragmented again by each iterator made
// after the next write, so with the evictions and removals of a busy
// server every Registrations scan (each uncached account's lookup) cost
// more and more (BenchmarkMillion: a third of the cold path's allocations).
// A registration's marks are bounded by the pushes of the retention period.
func (s *Store) forget(b *pebble.Batch, k engine.RegKey) error {
	if err := errors.Join(b.Delete(regKey(k), nil), b.Delete(stateKey(k), nil)); err != nil {
		return err
	}
	return s.scan(markPrefix(k), func(key, _ []byte) error { return b.Delete(key, nil) })
}

// PutRegistration implements engine.Store.
func (s *Store) PutRegistration(r engine.StoredRegistration, max int) ([]engine.RegKey, error) {
	key := engine.RegKey{Account: r.Account, ID: r.ID}
	if err := errors.Join(s.check(), validKey(key)); err != nil {
		return nil, err
	}
	if err := s.space.admit(); err != nil {
		return nil, err
	}
	v, err := marshal(r)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockAccount(r.Account)
	if err != nil {
		return nil, err
	}
	defer unlock()
	existing, err := s.registrations(r.Account)
	if err != nil {
		return nil, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	// A fresh enable starts a fresh error account.
	if err := errors.Join(
		b.Set(regKey(key), v, nil),
		b.Delete(disabledKey(key), nil),
		b.Delete(stateKey(key), nil),
	); err != nil {
		return nil, err
	}
	var others []engine.StoredRegistration
	for _, e := range existing {
		if e.ID != r.ID {
			others = append(others, e)
		}
	}
	var evicted []engine.RegKey
	for max > 0 && len(others)+1 > max {
		old := engine.RegKey{Account: others[0].Account, ID: others[0].ID} // oldest first
		others = others[1:]
		if err := s.forget(b, old); err != nil {
			return nil, err
		}
		evicted = append(evicted, old)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, fmt.Errorf("store: commit registration: %w", err)
	}
	return evicted, nil
}

// DeleteRegistration implements engine.Store.
func (s *Store) DeleteRegistration(k engine.RegKey) (bool, error) {
	if err := s.check(); err != nil {
		return false, err
	}
	unlock, err := s.lockAccount(k.Account)
	if err != nil {
		return false, err
	}
	defer unlock()
	_, closer, err := s.db.Get(regKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	b := s.db.NewBatch()
	defer b.Close()
	if err := s.forget(b, k); err != nil {
		return false, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, fmt.Errorf("store: commit deletion: %w", err)
	}
	return true, nil
}

// Registrations implements engine.Store.
func (s *Store) Registrations(account string) ([]engine.StoredRegistration, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return s.registrations(account)
}

func (s *Store) registrations(account string) ([]engine.StoredRegistration, error) {
	var out []engine.StoredRegistration
	err := scanJSON(s, prefixReg+account+"\x00", "registration", func(r engine.StoredRegistration) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// ForEachRegistration implements engine.Store.
func (s *Store) ForEachRegistration(fn func(engine.StoredRegistration) error) error {
	if err := s.check(); err != nil {
		return err
	}
	return scanJSON(s, prefixReg, "registration", fn)
}

// RecordPush implements engine.Store. Marks and the outbox entry go in one
// synced batch: after a crash either both are there (the push will be
// delivered) or neither (the stanza will be pushed when a trigger reports it
// again).
//
// Group commit: the check-and-set of the marks happens under mu, but the
// synced commit does not: the writes go to the committer, which writes all
// the records queued meanwhile in one batch with one sync. Each call
// returns only after the sync that contains its writes. While a batch is being committed its marks
// are in pending: a concurrent call for one of those marks waits for that
// commit and then checks again, so exactly one of them reports first even
// though the database does not show the marks yet — and if the commit
// fails, the waiter can still record the push instead of dropping it as a
// duplicate of a push that was never stored.
func (s *Store) RecordPush(k engine.RegKey, keys []string, at time.Time, entry engine.OutboxEntry) (bool, error) {
	if err := validKey(k); err != nil {
		return false, err
	}
	v, err := marshalOutbox(entry)
	if err != nil {
		return false, err
	}
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.check(); err != nil {
		return false, err
	}
	p := markPrefix(k)
	marks := make([][]byte, len(keys))
	for i, key := range keys {
		marks[i] = append(p[:len(p):len(p)], key...)
	}
	done, first, err := s.claimMarks(marks)
	if !first || err != nil {
		return false, err
	}
	defer s.release(marks, done)
	ts := binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano()))
	c := &pushCommit{marks: marks, ts: ts, outKey: []byte(prefixOutbox + entry.ID), outValue: v, done: make(chan error, 1)}
	s.commits <- c
	if err := <-c.done; err != nil {
		return false, err
	}
	return true, nil
}

// claimMarks reports whether none of marks is stored or being committed,
// and if so leaves them all in pending under one new channel, which the
// caller closes (after removing them) once its commit has finished. A mark
// being committed by another call is waited for, then everything is checked
// again. The marks are claimed in pending before the database is read, and
// read outside mu, so that the reads of unrelated pushes run in parallel:
// a concurrent call for one of them waits on the claim instead.
func (s *Store) claimMarks(marks [][]byte) (done chan struct{}, first bool, err error) {
	for {
		s.mu.Lock()
		var wait chan struct{}
		for _, m := range marks {
			if c, ok := s.pending[string(m)]; ok {
				wait = c
				break
			}
		}
		if wait != nil {
			s.mu.Unlock()
			<-wait
			continue
		}
		done = make(chan struct{})
		for _, m := range marks {
			s.pending[string(m)] = done
		}
		s.mu.Unlock()
		first, err := s.noneStored(marks)
		if first && err == nil {
			return done, true, nil
		}
		s.release(marks, done)
		return nil, false, err
	}
}

// noneStored reports whether no mark of marks is in the database.
func (s *Store) noneStored(marks [][]byte) (bool, error) {
	for _, m := range marks {
		_, closer, err := s.db.Get(m)
		if err == nil {
			closer.Close()
			return false, nil
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return false, err
		}
	}
	return true, nil
}

// release ends the claim of marks made by claimMarks.
func (s *Store) release(marks [][]byte, done chan struct{}) {
	s.mu.Lock()
	for _, m := range marks {
		delete(s.pending, string(m))
	}
	s.mu.Unlock()
	close(done)
}

// PutOutbox implements engine.Store.
func (s *Store) PutOutbox(e engine.OutboxEntry, sync bool) error {
	if err := s.check(); err != nil {
		return err
	}
	v, err := marshalOutbox(e)
	if err != nil {
		return err
	}
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	return s.db.Set([]byte(prefixOutbox+e.ID), v, opt)
}

// PutOutboxes implements engine.OutboxBatcher: one batch, not synced.
func (s *Store) PutOutboxes(es []engine.OutboxEntry) error {
	if err := s.check(); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, e := range es {
		v, err := marshalOutbox(e)
		if err != nil {
			return err
		}
		if err := b.Set([]byte(prefixOutbox+e.ID), v, nil); err != nil {
			return err
		}
	}
	return b.Commit(pebble.NoSync)
}

var _ engine.OutboxBatcher = (*Store)(nil)

// DeleteOutbox implements engine.Store.
func (s *Store) DeleteOutbox(id string) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.db.Delete([]byte(prefixOutbox+id), pebble.NoSync)
}

// ForEachOutbox implements engine.Store.
func (s *Store) ForEachOutbox(fn func(engine.OutboxEntry) error) error {
	if err := s.check(); err != nil {
		return err
	}
	return scanJSON(s, prefixOutbox, "outbox", fn)
}

// RegState implements engine.Store.
func (s *Store) RegState(k engine.RegKey) (engine.RegState, error) {
	var st engine.RegState
	if err := s.check(); err != nil {
		return st, err
	}
	v, closer, err := s.db.Get(stateKey(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer closer.Close()
	if err := json.Unmarshal(v, &st); err != nil {
		return engine.RegState{}, fmt.Errorf("store: corrupt error state: %w", err)
	}
	return st, nil
}

// PutRegState implements engine.Store.
func (s *Store) PutRegState(k engine.RegKey, st engine.RegState) error {
	if err := errors.Join(s.check(), validKey(k)); err != nil {
		return err
	}
	if st == (engine.RegState{}) {
		return s.db.Delete(stateKey(k), pebble.Sync)
	}
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.db.Set(stateKey(k), v, pebble.Sync)
}

// DisableRegistration implements engine.Store.
func (s *Store) DisableRegistration(k engine.RegKey, rec engine.DisabledRecord) error {
	if err := errors.Join(s.check(), validKey(k)); err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	unlock, err := s.lockAccount(k.Account)
	if err != nil {
		return err
	}
	defer unlock()
	b := s.db.NewBatch()
	defer b.Close()
	if err := errors.Join(s.forget(b, k), b.Set(disabledKey(k), v, nil)); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store: commit disable: %w", err)
	}
	return nil
}

// Disabled implements engine.Store.
func (s *Store) Disabled(account string) ([]engine.DisabledRecord, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	var out []engine.DisabledRecord
	err := scanJSON(s, prefixDisabled+account+"\x00", "disabled", func(r engine.DisabledRecord) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PruneMarks implements engine.Store.
func (s *Store) PruneMarks(before time.Time) (int, error) {
	// Not under mu: pushes go on while the marks are scanned (a mark
	// pruned meanwhile is one old enough to be forgotten either way).
	s.life.RLock()
	defer s.life.RUnlock()
	if err := s.check(); err != nil {
		return 0, err
	}
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
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("store: commit pruning: %w", err)
	}
	return n, nil
}

// Close implements engine.Store. Calls after the first return ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return ErrClosed
	}
	s.life.Lock() // let commits in flight (RecordPush, read-modify-writes) finish
	defer s.life.Unlock()
	close(s.commits) // no RecordPush can send now: they check closed under life
	<-s.committed
	s.mu.Lock() // let a read-modify-write in progress finish
	defer s.mu.Unlock()
	s.space.stop()
	if !s.writable {
		return s.db.Close()
	}
	// The shutdown record lets the next Open tell whether anything was
	// lost meanwhile (recovery.go). A store that cannot be counted or
	// closed cleanly gets none: the next Open then checks what it can.
	c, err := count(s.db)
	if err := errors.Join(err, s.db.Close()); err != nil {
		return err
	}
	return writeShutdownRecord(s.dir, c)
}
