package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Advisory lock classes (the first key of PostgreSQL's two-key advisory
// locks; the second is 0 or a hash). Chosen to be unlikely to meet another
// application's locks in the same database.
const (
	lockMigrate  int32 = 0x70327300 // "p2s\0": schema migrations, session lock
	lockAccounts int32 = 0x70327301 // one account's registrations, transaction lock
)

// migration is one step of the schema. Steps are never edited once
// released: a change is a new step.
type migration struct {
	version int
	what    string
	sql     string
}

// migrations, in order. push2_schema records the ones applied.
var migrations = []migration{
	{1, "registrations, dedupe marks, outbox, error states, disabled records", `
CREATE TABLE push2_registrations (
	account   text        NOT NULL,
	id        text        NOT NULL,
	created   timestamptz NOT NULL,
	enable    text        NOT NULL,
	suspended boolean     NOT NULL DEFAULT false,
	PRIMARY KEY (account, id)
);
CREATE TABLE push2_marks (
	account text        NOT NULL,
	reg     text        NOT NULL,
	key     text        NOT NULL,
	at      timestamptz NOT NULL,
	PRIMARY KEY (account, reg, key)
);
CREATE INDEX push2_marks_at ON push2_marks (at);
CREATE TABLE push2_outbox (
	id       text        PRIMARY KEY,
	account  text        NOT NULL,
	reg      text        NOT NULL,
	dest     text        NOT NULL,
	stanza   text        NOT NULL,
	created  timestamptz,
	attempts integer     NOT NULL,
	due      timestamptz,
	sent_at  timestamptz,
	last_err text        NOT NULL
);
CREATE TABLE push2_reg_state (
	account        text    NOT NULL,
	reg            text    NOT NULL,
	errors         integer NOT NULL,
	first_error    timestamptz,
	last_condition text    NOT NULL,
	PRIMARY KEY (account, reg)
);
CREATE TABLE push2_disabled (
	account        text    NOT NULL,
	reg            text    NOT NULL,
	rec_account    text    NOT NULL,
	rec_id         text    NOT NULL,
	at             timestamptz,
	reason         text    NOT NULL,
	errors         integer NOT NULL,
	first_error    timestamptz,
	last_condition text    NOT NULL,
	service        text    NOT NULL,
	PRIMARY KEY (account, reg)
);`},
	{2, "outbox claims: several instances share the outbox", `
ALTER TABLE push2_outbox ADD COLUMN claimed_by text, ADD COLUMN claimed_until timestamptz;
CREATE INDEX push2_outbox_pending ON push2_outbox (created, id) WHERE sent_at IS NULL;
CREATE INDEX push2_outbox_sent ON push2_outbox (sent_at) WHERE sent_at IS NOT NULL;`},
	{3, "push2_record_push: a push recorded in one round trip", `
CREATE FUNCTION push2_record_push(p_account text, p_reg text, p_keys text[], p_at timestamptz,
	p_id text, p_e_account text, p_e_reg text, p_dest text, p_stanza text, p_created timestamptz, p_attempts integer,
	p_due timestamptz, p_sent timestamptz, p_last_err text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ins text[];
BEGIN
	-- Keys in the caller's (sorted) order; a key another transaction is
	-- inserting makes this one wait for its outcome.
	WITH m AS (
		INSERT INTO push2_marks (account, reg, key, at)
		SELECT p_account, p_reg, k, p_at FROM unnest(p_keys) WITH ORDINALITY AS t(k, n) ORDER BY n
		ON CONFLICT DO NOTHING RETURNING key)
	SELECT coalesce(array_agg(key), '{}') INTO ins FROM m;
	IF cardinality(ins) <> cardinality(p_keys) THEN
		-- A duplicate: take back the marks this call added.
		DELETE FROM push2_marks WHERE account = p_account AND reg = p_reg AND key = ANY(ins);
		RETURN false;
	END IF;
	INSERT INTO push2_outbox (id, account, reg, dest, stanza, created, attempts, due, sent_at, last_err)
	VALUES (p_id, p_e_account, p_e_reg, p_dest, p_stanza, p_created, p_attempts, p_due, p_sent, p_last_err)
	ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, reg = EXCLUDED.reg, dest = EXCLUDED.dest,
		stanza = EXCLUDED.stanza, created = EXCLUDED.created, attempts = EXCLUDED.attempts, due = EXCLUDED.due,
		sent_at = EXCLUDED.sent_at, last_err = EXCLUDED.last_err, claimed_by = NULL, claimed_until = NULL;
	RETURN true;
END
$$;`},
	{4, "push2_leader: the lease of the instance that runs the periodic sweeps", `
CREATE TABLE push2_leader (
	name   text        PRIMARY KEY,
	holder text        NOT NULL,
	until  timestamptz NOT NULL
);`},
}

// SchemaVersion is the schema version this build creates.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// migrate brings the schema up to date. It holds a session advisory lock
// for the whole run, so that instances starting at once wait for each
// other: the first applies the missing steps, the others find them
// applied. Each step is one transaction with its push2_schema row, so a
// crash mid-step leaves the step unapplied. A database migrated by a newer
// push2 (a version this build does not know) is refused.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return migrateTo(ctx, pool, len(migrations))
}

// migrateTo applies the first n steps (tests use it to make an old schema).
func migrateTo(ctx context.Context, pool *pgxpool.Pool, n int) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, 0)`, lockMigrate); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1, 0)`, lockMigrate)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS push2_schema (
		version    integer     PRIMARY KEY,
		what       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	var have int
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM push2_schema`).Scan(&have); err != nil {
		return err
	}
	if have > SchemaVersion() {
		return fmt.Errorf("the database has schema version %d, newer than this push2's %d: run a newer push2", have, SchemaVersion())
	}
	for _, m := range migrations[:n] {
		if m.version <= have {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO push2_schema (version, what) VALUES ($1, $2)`, m.version, m.what)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %d (%s): %w", m.version, m.what, err)
		}
	}
	return nil
}
