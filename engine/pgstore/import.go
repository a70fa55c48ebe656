package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/push2/push2/engine"
)

// Source is a store to copy from (Import): engine/pebblestore.Store is one.
type Source interface {
	ForEachRegistration(fn func(engine.StoredRegistration) error) error
	ForEachOutbox(fn func(engine.OutboxEntry) error) error
	ForEachMark(fn func(k engine.RegKey, key string, at time.Time) error) error
	ForEachRegState(fn func(k engine.RegKey, st engine.RegState) error) error
	ForEachDisabled(fn func(k engine.RegKey, rec engine.DisabledRecord) error) error
}

// ErrNotEmpty is returned by Import into a database that holds records.
var ErrNotEmpty = errors.New("pgstore: the database already holds push2 records; import only into an empty one")

// Import copies every record of src into the store, which must be empty,
// in one transaction (COPY): either everything is there afterwards or
// nothing. It returns what the database holds then; the caller compares it
// with the source's counts.
func (s *Store) Import(src Source) (Counts, error) {
	c, err := s.Count()
	if err != nil {
		return c, err
	}
	if c != (Counts{}) {
		return c, ErrNotEmpty
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return Counts{}, ErrClosed
	}
	defer s.mu.RUnlock()
	ctx := context.Background() // a large store takes longer than the call timeout
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tables := []struct {
			name string
			cols []string
			feed func(emit func(...any) error) error
		}{
			{"push2_registrations", []string{"account", "id", "created", "enable", "suspended"}, func(emit func(...any) error) error {
				return src.ForEachRegistration(func(r engine.StoredRegistration) error {
					return emit(r.Account, r.ID, r.Created.UTC(), r.Enable, r.Suspended)
				})
			}},
			{"push2_outbox", []string{"id", "account", "reg", "dest", "stanza", "created", "attempts", "due", "sent_at", "last_err"}, func(emit func(...any) error) error {
				return src.ForEachOutbox(func(e engine.OutboxEntry) error {
					return emit(e.ID, e.Account, e.Reg, e.To, e.Stanza, ts(e.Created), e.Attempts, ts(e.Due), ts(e.SentAt), e.LastErr)
				})
			}},
			{"push2_marks", []string{"account", "reg", "key", "at"}, func(emit func(...any) error) error {
				return src.ForEachMark(func(k engine.RegKey, key string, at time.Time) error {
					return emit(k.Account, k.ID, key, at.UTC())
				})
			}},
			{"push2_reg_state", []string{"account", "reg", "errors", "first_error", "last_condition"}, func(emit func(...any) error) error {
				return src.ForEachRegState(func(k engine.RegKey, st engine.RegState) error {
					return emit(k.Account, k.ID, st.Errors, ts(st.FirstError), st.LastCondition)
				})
			}},
			{"push2_disabled", []string{"account", "reg", "rec_account", "rec_id", "at", "reason", "errors", "first_error", "last_condition", "service"}, func(emit func(...any) error) error {
				return src.ForEachDisabled(func(k engine.RegKey, r engine.DisabledRecord) error {
					return emit(k.Account, k.ID, r.Account, r.ID, ts(r.At), r.Reason, r.Errors, ts(r.FirstError), r.LastCondition, r.Service)
				})
			}},
		}
		for _, tb := range tables {
			if err := copyTable(ctx, tx, tb.name, tb.cols, tb.feed); err != nil {
				return fmt.Errorf("copy into %s: %w", tb.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return Counts{}, s.wrap("import", err)
	}
	return s.Count()
}

// copyTable streams the rows feed emits into table with COPY.
func copyTable(ctx context.Context, tx pgx.Tx, table string, cols []string, feed func(emit func(...any) error) error) error {
	rows := make(chan []any, 256)
	stop := make(chan struct{})
	fed := make(chan error, 1)
	go func() {
		defer close(rows)
		fed <- feed(func(v ...any) error {
			select {
			case rows <- v:
				return nil
			case <-stop:
				return errors.New("copy stopped")
			}
		})
	}()
	_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromFunc(func() ([]any, error) {
		return <-rows, nil // nil once feed is done: the end
	}))
	close(stop)
	for range rows {
	}
	if ferr := <-fed; ferr != nil {
		return ferr
	}
	return err
}
