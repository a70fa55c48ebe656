// Package pgstore is an engine.Store on PostgreSQL (pgx/v5, pgxpool): the
// store for a push2d that must survive the loss of its machine, and for
// several push2d instances sharing one database (DESIGN.md "Scale").
//
// Every method is one transaction, committed with PostgreSQL's default
// synchronous_commit, so "durable" means what it means for PostgreSQL: on
// the server's WAL when the method returns. Storing a notification and its
// dedupe marks (RecordPush) is one transaction; two instances recording
// the same stanza for the same registration at once get first exactly once,
// because the second INSERT of the same mark waits for the first
// transaction and then sees its row.
//
// Open creates and migrates the schema (migrations.go): versioned
// migrations, applied under a PostgreSQL advisory lock, so that several
// instances starting at once apply each migration exactly once.
//
// The DSN's password never appears in an error or a log line: errors name
// the server by host, port and database only (Redact).
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/push2/push2/engine"
)

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("pgstore: closed")

// Options configures Open. The zero value is usable.
type Options struct {
	// Timeout bounds each call (connecting, the transaction, retries of a
	// serialization failure). Default 30s: a database that does not answer
	// makes calls fail rather than hang.
	Timeout time.Duration
	// ClaimLease is how long an outbox claim (engine.SharedOutbox) holds:
	// the longest a notification claimed by an instance that died waits
	// before another instance sends it. Default 10s. A send taking longer
	// than this may be repeated by another instance (delivery is
	// at-least-once); handing a stanza to the XMPP server takes
	// milliseconds.
	ClaimLease time.Duration
	// MaxConns is the pool size; default pgxpool's (max(4, CPUs)), or
	// pool_max_conns in the DSN.
	MaxConns int32
}

// Store is an engine.Store on PostgreSQL.
type Store struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	lease   time.Duration
	where   string // the server and database, without credentials, for errors

	mu     sync.RWMutex
	closed bool
}

var (
	_ engine.Store        = (*Store)(nil)
	_ engine.SharedOutbox = (*Store)(nil)
	_ engine.SweepLeader  = (*Store)(nil)
)

// DefaultClaimLease is Options.ClaimLease's default.
const DefaultClaimLease = 10 * time.Second

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value connection string), creates or migrates the schema, and
// returns the store.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.ClaimLease <= 0 {
		opts.ClaimLease = DefaultClaimLease
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors may quote the connection string: say only
		// that it is malformed.
		return nil, errors.New("pgstore: the DSN is malformed (expected postgres://user:password@host:port/db?… or key=value pairs)")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > opts.Timeout {
		cfg.ConnConfig.ConnectTimeout = opts.Timeout
	}
	s := &Store{timeout: opts.Timeout, lease: opts.ClaimLease, where: describe(cfg.ConnConfig)}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, s.wrap("connect", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		s.pool.Close()
		return nil, s.wrap("connect", err)
	}
	if err := migrate(ctx, s.pool); err != nil {
		s.pool.Close()
		return nil, s.wrap("migrate the schema", err)
	}
	return s, nil
}

// describe names the server without credentials: user@host:port/database.
func describe(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", c.User, c.Host, c.Port, c.Database)
}

// Redact returns dsn with its password replaced by "xxxxx", for messages
// that must show the DSN. A DSN that cannot be parsed is replaced whole.
func Redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	if !strings.Contains(dsn, "=") {
		return "(malformed DSN)"
	}
	var out []string
	for _, f := range strings.Fields(dsn) {
		if k, _, ok := strings.Cut(f, "="); ok && strings.EqualFold(k, "password") {
			f = k + "=xxxxx"
		}
		out = append(out, f)
	}
	return strings.Join(out, " ")
}

// wrap turns a pgx error into one that names the operation and the server
// (never the password). PostgreSQL's own error (code, message) is kept:
// it never carries the password. A connection error from pgconn may quote
// the configuration, so only its cause is kept.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Code == "53100" { // disk_full
			return fmt.Errorf("pgstore %s: %s: %w (%w)", s.where, op, engine.ErrStorageLow, pe)
		}
		return fmt.Errorf("pgstore %s: %s: %w", s.where, op, pe)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("pgstore %s: %s: no answer within %v: %w", s.where, op, s.timeout, context.DeadlineExceeded)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return fmt.Errorf("pgstore %s: %s: cannot connect: %s", s.where, op, scrub(ce.Unwrap().Error()))
	}
	return fmt.Errorf("pgstore %s: %s: %s", s.where, op, scrub(err.Error()))
}

// scrub removes anything that looks like a password assignment from a
// message, a last line of defence for errors pgx builds from the config.
func scrub(msg string) string {
	for _, marker := range []string{"password=", "password:"} {
		for {
			i := strings.Index(strings.ToLower(msg), marker)
			if i < 0 {
				break
			}
			j := i + len(marker)
			k := j
			for k < len(msg) && msg[k] != ' ' && msg[k] != ')' && msg[k] != '&' {
				k++
			}
			msg = msg[:i] + "password-redacted" + msg[k:]
		}
	}
	return msg
}

// Where names the database (user@host:port/db), without the password.
func (s *Store) Where() string { return s.where }

// Pool returns the connection pool, for health checks and metrics.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// begin starts an operation: it fails after Close, and returns a context
// bounded by the store's timeout and the function that ends it.
func (s *Store) begin() (context.Context, func(), error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	return ctx, func() { cancel(); s.mu.RUnlock() }, nil
}

// tx runs fn in a transaction, retrying on a serialization failure or a
// deadlock (which PostgreSQL resolves by aborting one side).
func (s *Store) tx(op string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	for attempt := 0; ; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return fn(ctx, tx) })
		var pe *pgconn.PgError
		if attempt < 10 && errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01") {
			continue
		}
		return s.wrap(op, err)
	}
}

func validKey(k engine.RegKey) error {
	if k.Account == "" || k.ID == "" || strings.IndexByte(k.Account+k.ID, 0) >= 0 {
		return errors.New("pgstore: account and id must be non-empty and contain no NUL")
	}
	return nil
}

// ts maps the zero time to NULL and keeps the rest in UTC (timestamptz
// keeps microseconds).
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// tm is the reverse of ts.
func tm(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// lockAccount serializes writers of one account's registrations (eviction
// must see every other writer's result) for the rest of tx.
func lockAccount(ctx context.Context, tx pgx.Tx, account string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, lockAccounts, account)
	return err
}

// forget removes a registration's row, marks and error state.
func forget(ctx context.Context, tx pgx.Tx, k engine.RegKey) (bool, error) {
	tag, err := tx.Exec(ctx, `DELETE FROM push2_registrations WHERE account = $1 AND id = $2`, k.Account, k.ID)
	if err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM push2_marks WHERE account = $1 AND reg = $2`, k.Account, k.ID); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM push2_reg_state WHERE account = $1 AND reg = $2`, k.Account, k.ID); err != nil {
		return false, err
	}
	return tag.RowsAffected() > 0, nil
}

// PutRegistration implements engine.Store.
func (s *Store) PutRegistration(r engine.StoredRegistration, max int) ([]engine.RegKey, error) {
	key := engine.RegKey{Account: r.Account, ID: r.ID}
	if err := validKey(key); err != nil {
		return nil, err
	}
	var evicted []engine.RegKey
	err := s.tx("put registration", func(ctx context.Context, tx pgx.Tx) error {
		evicted = nil
		if err := lockAccount(ctx, tx, r.Account); err != nil {
			return err
		}
		if max > 0 {
			rows, err := tx.Query(ctx, `SELECT id FROM push2_registrations WHERE account = $1 AND id <> $2
				ORDER BY created, id`, r.Account, r.ID)
			if err != nil {
				return err
			}
			others, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for len(others)+1 > max {
				old := engine.RegKey{Account: r.Account, ID: others[0]}
				others = others[1:]
				if _, err := forget(ctx, tx, old); err != nil {
					return err
				}
				evicted = append(evicted, old)
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO push2_registrations (account, id, created, enable, suspended)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (account, id) DO UPDATE SET created = EXCLUDED.created, enable = EXCLUDED.enable, suspended = EXCLUDED.suspended`,
			r.Account, r.ID, r.Created.UTC(), r.Enable, r.Suspended); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM push2_disabled WHERE account = $1 AND reg = $2`, r.Account, r.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM push2_reg_state WHERE account = $1 AND reg = $2`, r.Account, r.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return evicted, nil
}

// DeleteRegistration implements engine.Store.
func (s *Store) DeleteRegistration(k engine.RegKey) (bool, error) {
	var ok bool
	err := s.tx("delete registration", func(ctx context.Context, tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, k.Account); err != nil {
			return err
		}
		var err error
		ok, err = forget(ctx, tx, k)
		return err
	})
	return ok, err
}

func scanReg(row pgx.CollectableRow) (engine.StoredRegistration, error) {
	var r engine.StoredRegistration
	err := row.Scan(&r.Account, &r.ID, &r.Created, &r.Enable, &r.Suspended)
	r.Created = r.Created.UTC()
	return r, err
}

// Registrations implements engine.Store.
func (s *Store) Registrations(account string) ([]engine.StoredRegistration, error) {
	ctx, done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := s.pool.Query(ctx, `SELECT account, id, created, enable, suspended FROM push2_registrations
		WHERE account = $1 ORDER BY created, id`, account)
	if err != nil {
		return nil, s.wrap("registrations", err)
	}
	out, err := pgx.CollectRows(rows, scanReg)
	if err != nil {
		return nil, s.wrap("registrations", err)
	}
	return out, nil
}

// page is how many rows a ForEach… method reads at a time; the callback
// runs between pages, outside any transaction, so it may call the store.
const page = 1000

// ForEachRegistration implements engine.Store, by account, then oldest
// first. Registrations written during the iteration may or may not be
// visited.
func (s *Store) ForEachRegistration(fn func(engine.StoredRegistration) error) error {
	var lastAcct, lastID string
	for {
		var batch []engine.StoredRegistration
		err := s.read("list registrations", func(ctx context.Context) error {
			rows, err := s.pool.Query(ctx, `SELECT account, id, created, enable, suspended FROM push2_registrations
				WHERE (account, id) > ($1, $2) ORDER BY account, id LIMIT $3`, lastAcct, lastID, page)
			if err != nil {
				return err
			}
			batch, err = pgx.CollectRows(rows, scanReg)
			return err
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		lastAcct, lastID = batch[len(batch)-1].Account, batch[len(batch)-1].ID
		// Within an account, oldest first (Registrations' order).
		sort.SliceStable(batch, func(i, j int) bool {
			a, b := batch[i], batch[j]
			if a.Account != b.Account {
				return a.Account < b.Account
			}
			return a.Created.Before(b.Created)
		})
		for _, r := range batch {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(batch) < page {
			return nil
		}
	}
}

// read runs a read-only query function under the store's timeout.
func (s *Store) read(op string, fn func(ctx context.Context) error) error {
	ctx, done, err := s.begin()
	if err != nil {
		return err
	}
	defer done()
	return s.wrap(op, fn(ctx))
}

// RecordPush implements engine.Store: the marks and the outbox entry in one
// transaction, one round trip (the function push2_record_push). The marks
// are inserted in key order (so that two callers never wait for each other
// in opposite orders); a mark inserted by a concurrent, uncommitted call
// makes this INSERT wait for that call's outcome, so exactly one of them
// reports first. A duplicate takes back the marks it added before its
// transaction commits, so a caller waiting on one of them then inserts it.
func (s *Store) RecordPush(k engine.RegKey, keys []string, at time.Time, e engine.OutboxEntry) (bool, error) {
	if err := validKey(k); err != nil {
		return false, err
	}
	uniq := append([]string(nil), keys...)
	sort.Strings(uniq)
	n := 0
	for i, key := range uniq {
		if i == 0 || key != uniq[n-1] {
			uniq[n] = key
			n++
		}
	}
	uniq = uniq[:n]
	var first bool
	err := s.read("record push", func(ctx context.Context) error {
		// One statement, so one transaction (push2_record_push,
		// migration 3): the marks and the entry, or nothing.
		return s.pool.QueryRow(ctx, `SELECT push2_record_push($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			k.Account, k.ID, uniq, at.UTC(), e.ID, e.Account, e.Reg, e.To, e.Stanza, ts(e.Created), e.Attempts, ts(e.Due), ts(e.SentAt), e.LastErr).Scan(&first)
	})
	return first, err
}

func putOutbox(ctx context.Context, tx pgx.Tx, e engine.OutboxEntry) error {
	_, err := tx.Exec(ctx, `INSERT INTO push2_outbox (id, account, reg, dest, stanza, created, attempts, due, sent_at, last_err)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, reg = EXCLUDED.reg, dest = EXCLUDED.dest,
			stanza = EXCLUDED.stanza, created = EXCLUDED.created, attempts = EXCLUDED.attempts, due = EXCLUDED.due,
			sent_at = EXCLUDED.sent_at, last_err = EXCLUDED.last_err, claimed_by = NULL, claimed_until = NULL`,
		e.ID, e.Account, e.Reg, e.To, e.Stanza, ts(e.Created), e.Attempts, ts(e.Due), ts(e.SentAt), e.LastErr)
	return err
}

// PutOutbox implements engine.Store. Every write is durable (sync is
// ignored: PostgreSQL commits are).
func (s *Store) PutOutbox(e engine.OutboxEntry, _ bool) error {
	return s.tx("put outbox entry", func(ctx context.Context, tx pgx.Tx) error { return putOutbox(ctx, tx, e) })
}

// DeleteOutbox implements engine.Store.
func (s *Store) DeleteOutbox(id string) error {
	return s.read("delete outbox entry", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `DELETE FROM push2_outbox WHERE id = $1`, id)
		return err
	})
}

const outboxCols = `id, account, reg, dest, stanza, created, attempts, due, sent_at, last_err`

func scanOutbox(row pgx.CollectableRow) (engine.OutboxEntry, error) {
	var e engine.OutboxEntry
	var created, due, sent *time.Time
	err := row.Scan(&e.ID, &e.Account, &e.Reg, &e.To, &e.Stanza, &created, &e.Attempts, &due, &sent, &e.LastErr)
	e.Created, e.Due, e.SentAt = tm(created), tm(due), tm(sent)
	return e, err
}

// ForEachOutbox implements engine.Store, in id order.
func (s *Store) ForEachOutbox(fn func(engine.OutboxEntry) error) error {
	last := ""
	for {
		var batch []engine.OutboxEntry
		err := s.read("list outbox", func(ctx context.Context) error {
			rows, err := s.pool.Query(ctx, `SELECT `+outboxCols+` FROM push2_outbox WHERE id > $1 ORDER BY id LIMIT $2`, last, page)
			if err != nil {
				return err
			}
			batch, err = pgx.CollectRows(rows, scanOutbox)
			return err
		})
		if err != nil {
			return err
		}
		for _, e := range batch {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(batch) < page {
			return nil
		}
		last = batch[len(batch)-1].ID
	}
}

// RegState implements engine.Store.
func (s *Store) RegState(k engine.RegKey) (engine.RegState, error) {
	var st engine.RegState
	err := s.read("error state", func(ctx context.Context) error {
		var first *time.Time
		err := s.pool.QueryRow(ctx, `SELECT errors, first_error, last_condition FROM push2_reg_state
			WHERE account = $1 AND reg = $2`, k.Account, k.ID).Scan(&st.Errors, &first, &st.LastCondition)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		st.FirstError = tm(first)
		return err
	})
	return st, err
}

// PutRegState implements engine.Store.
func (s *Store) PutRegState(k engine.RegKey, st engine.RegState) error {
	if err := validKey(k); err != nil {
		return err
	}
	return s.read("put error state", func(ctx context.Context) error {
		if st == (engine.RegState{}) {
			_, err := s.pool.Exec(ctx, `DELETE FROM push2_reg_state WHERE account = $1 AND reg = $2`, k.Account, k.ID)
			return err
		}
		_, err := s.pool.Exec(ctx, `INSERT INTO push2_reg_state (account, reg, errors, first_error, last_condition)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account, reg) DO UPDATE SET errors = EXCLUDED.errors,
			first_error = EXCLUDED.first_error, last_condition = EXCLUDED.last_condition`,
			k.Account, k.ID, st.Errors, ts(st.FirstError), st.LastCondition)
		return err
	})
}

// DisableRegistration implements engine.Store.
func (s *Store) DisableRegistration(k engine.RegKey, rec engine.DisabledRecord) error {
	if err := validKey(k); err != nil {
		return err
	}
	return s.tx("disable registration", func(ctx context.Context, tx pgx.Tx) error {
		if err := lockAccount(ctx, tx, k.Account); err != nil {
			return err
		}
		if _, err := forget(ctx, tx, k); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO push2_disabled (account, reg, rec_account, rec_id, at, reason, errors, first_error, last_condition, service)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (account, reg) DO UPDATE SET rec_account = EXCLUDED.rec_account, rec_id = EXCLUDED.rec_id, at = EXCLUDED.at,
			reason = EXCLUDED.reason, errors = EXCLUDED.errors, first_error = EXCLUDED.first_error,
			last_condition = EXCLUDED.last_condition, service = EXCLUDED.service`,
			k.Account, k.ID, rec.Account, rec.ID, ts(rec.At), rec.Reason, rec.Errors, ts(rec.FirstError), rec.LastCondition, rec.Service)
		return err
	})
}

// Disabled implements engine.Store, in registration id order.
func (s *Store) Disabled(account string) ([]engine.DisabledRecord, error) {
	var out []engine.DisabledRecord
	err := s.read("disabled records", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT rec_account, rec_id, at, reason, errors, first_error, last_condition, service
			FROM push2_disabled WHERE account = $1 ORDER BY reg`, account)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (engine.DisabledRecord, error) {
			var r engine.DisabledRecord
			var at, first *time.Time
			err := row.Scan(&r.Account, &r.ID, &at, &r.Reason, &r.Errors, &first, &r.LastCondition, &r.Service)
			r.At, r.FirstError = tm(at), tm(first)
			return r, err
		})
		return err
	})
	return out, err
}

// PruneMarks implements engine.Store.
func (s *Store) PruneMarks(before time.Time) (int, error) {
	var n int
	err := s.read("prune dedupe marks", func(ctx context.Context) error {
		tag, err := s.pool.Exec(ctx, `DELETE FROM push2_marks WHERE at < $1`, before.UTC())
		n = int(tag.RowsAffected())
		return err
	})
	return n, err
}

// Close implements engine.Store: it waits for running calls and closes the
// pool. Calls after the first return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	s.pool.Close()
	return nil
}

// Counts is how many records of each kind the database holds.
type Counts struct {
	Registrations, Outbox, Marks, States, Disabled int
}

// Count counts the records (push2d logs it at start; push2 store and the
// migration's check compare it).
func (s *Store) Count() (Counts, error) {
	var c Counts
	err := s.read("count", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM push2_registrations), (SELECT count(*) FROM push2_outbox),
			(SELECT count(*) FROM push2_marks), (SELECT count(*) FROM push2_reg_state),
			(SELECT count(*) FROM push2_disabled)`).Scan(&c.Registrations, &c.Outbox, &c.Marks, &c.States, &c.Disabled)
	})
	return c, err
}

// ReadDSNFile reads a DSN from a file (push2d's store.dsn_file, push2
// store's postgres-file:FILE). Like ssh with a private key, it refuses a
// file that group or others may access: the DSN holds the database
// password. Errors name the file, never its content.
func ReadDSNFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s is accessible by group or others (mode %04o): other users could read the database password; run chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 8192))
	if err != nil {
		return "", err
	}
	dsn := strings.TrimSpace(string(b))
	if dsn == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return dsn, nil
}

// Health is the database's state for metrics and health checks.
type Health struct {
	Up bool // the database answered
	// Pool: connections open, in use, idle, and the most allowed.
	TotalConns, AcquiredConns, IdleConns, MaxConns int32
	// Pending counts the outbox entries not yet sent; DueLag is how long
	// the oldest due one has waited past its due time (0: none is late).
	Pending int
	DueLag  time.Duration
}

// Health reads the database's state at now, within timeout.
func (s *Store) Health(now time.Time, timeout time.Duration) Health {
	st := s.pool.Stat()
	h := Health{TotalConns: st.TotalConns(), AcquiredConns: st.AcquiredConns(), IdleConns: st.IdleConns(), MaxConns: st.MaxConns()}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return h
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `SELECT count(*), min(due) FILTER (WHERE due <= $1) FROM push2_outbox WHERE sent_at IS NULL`, now.UTC()).Scan(&h.Pending, &oldest)
	if err != nil {
		return h
	}
	h.Up = true
	if oldest != nil {
		h.DueLag = max(0, now.Sub(*oldest))
	}
	return h
}
