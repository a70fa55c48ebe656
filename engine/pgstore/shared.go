package pgstore

import (
	"context"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/push2/push2/engine"
)

// The outbox shared by several engines (engine.SharedOutbox) on plain SQL:
// a claim is claimed_by (the owner) and claimed_until (on the database's
// clock, so that the instances' clocks need not agree), taken with
// SELECT … FOR UPDATE SKIP LOCKED so that concurrent claimants never wait
// for each other nor take the same entry. A claim whose claimed_until has
// passed is free again: an instance that dies holding claims delays their
// notifications by at most the lease (Options.ClaimLease). Any change of
// the entry by PutOutbox (an error reply that reschedules it) drops the
// claim.

// ClaimOutbox implements engine.SharedOutbox.
func (s *Store) ClaimOutbox(owner string, now time.Time, n int) ([]engine.OutboxEntry, error) {
	var out []engine.OutboxEntry
	err := s.read("claim outbox entries", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `UPDATE push2_outbox o SET claimed_by = $1, claimed_until = now() + $4 * interval '1 millisecond'
			FROM (SELECT id FROM push2_outbox
				WHERE sent_at IS NULL AND (due IS NULL OR due <= $2) AND (claimed_until IS NULL OR claimed_until < now())
				ORDER BY created, id LIMIT $3 FOR UPDATE SKIP LOCKED) c
			WHERE o.id = c.id
			RETURNING o.id, o.account, o.reg, o.dest, o.stanza, o.created, o.attempts, o.due, o.sent_at, o.last_err`,
			owner, now.UTC(), n, s.lease.Milliseconds())
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanOutbox)
		return err
	})
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, err
}

// SentOutbox implements engine.SharedOutbox: one statement for the whole
// batch (a <routed/> of the bridge confirms several at once), so a burst
// costs one commit per confirmation batch, not per notification.
func (s *Store) SentOutbox(owner string, es []engine.OutboxEntry) ([]string, error) {
	if len(es) == 0 {
		return nil, nil
	}
	ids, stanzas, errs := make([]string, len(es)), make([]string, len(es)), make([]string, len(es))
	attempts := make([]int64, len(es))
	due, sent := make([]*time.Time, len(es)), make([]*time.Time, len(es))
	for i, e := range es {
		ids[i], stanzas[i], errs[i], attempts[i] = e.ID, e.Stanza, e.LastErr, int64(e.Attempts)
		due[i], sent[i] = tsp(e.Due), tsp(e.SentAt)
	}
	var done []string
	err := s.read("record sends", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `UPDATE push2_outbox o SET stanza = u.stanza, attempts = u.attempts, due = u.due,
			sent_at = u.sent_at, last_err = u.last_err, claimed_by = NULL, claimed_until = NULL
			FROM unnest($2::text[], $3::text[], $4::int8[], $5::timestamptz[], $6::timestamptz[], $7::text[])
				AS u(id, stanza, attempts, due, sent_at, last_err)
			WHERE o.id = u.id AND o.claimed_by = $1 AND o.sent_at IS NULL
			RETURNING o.id`, owner, ids, stanzas, attempts, due, sent, errs)
		if err != nil {
			return err
		}
		done, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return done, err
}

// tsp is ts for an array element: nil for the zero time.
func tsp(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// ReleaseOutbox implements engine.SharedOutbox.
func (s *Store) ReleaseOutbox(owner string, ids []string) error {
	return s.read("release claims", func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, `UPDATE push2_outbox SET claimed_by = NULL, claimed_until = NULL
			WHERE id = ANY($2) AND claimed_by = $1 AND sent_at IS NULL`, owner, ids)
		return err
	})
}

// TakeDelivered implements engine.SharedOutbox.
func (s *Store) TakeDelivered(sentBefore time.Time, n int) ([]engine.OutboxEntry, error) {
	var out []engine.OutboxEntry
	err := s.read("take delivered entries", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `DELETE FROM push2_outbox WHERE id IN (
				SELECT id FROM push2_outbox WHERE sent_at IS NOT NULL AND sent_at <= $1
				ORDER BY sent_at LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING `+outboxCols, sentBefore.UTC(), n)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, scanOutbox)
		return err
	})
	return out, err
}

// GetOutbox implements engine.SharedOutbox.
func (s *Store) GetOutbox(id string) (engine.OutboxEntry, bool, error) {
	var e engine.OutboxEntry
	var found bool
	err := s.read("read outbox entry", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT `+outboxCols+` FROM push2_outbox WHERE id = $1`, id)
		if err != nil {
			return err
		}
		all, err := pgx.CollectRows(rows, scanOutbox)
		if len(all) == 1 {
			e, found = all[0], true
		}
		return err
	})
	return e, found, err
}

// OutboxLen implements engine.SharedOutbox.
func (s *Store) OutboxLen() (int, error) {
	var n int
	err := s.read("count outbox", func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT count(*) FROM push2_outbox`).Scan(&n)
	})
	return n, err
}

// LeadSweeps implements engine.SweepLeader: one row of push2_leader, taken
// when it is free or expired (on the database's clock) and renewed by its
// holder; one statement, so two instances trying at once cannot both win.
func (s *Store) LeadSweeps(owner string, ttl time.Duration) (bool, error) {
	var lead bool
	err := s.read("lead the sweeps", func(ctx context.Context) error {
		if ttl <= 0 {
			_, err := s.pool.Exec(ctx, `DELETE FROM push2_leader WHERE name = 'sweeps' AND holder = $1`, owner)
			return err
		}
		tag, err := s.pool.Exec(ctx, `INSERT INTO push2_leader (name, holder, until)
			VALUES ('sweeps', $1, now() + $2 * interval '1 millisecond')
			ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
			WHERE push2_leader.holder = EXCLUDED.holder OR push2_leader.until < now()`, owner, ttl.Milliseconds())
		lead = tag.RowsAffected() == 1
		return err
	})
	return lead, err
}
