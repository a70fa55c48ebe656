package pgstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/storetest"
	"github.com/push2/push2/internal/pgtest"
)

// server is the package's private PostgreSQL cluster; each test makes its
// own database on it.
var server *pgtest.Server

func TestMain(m *testing.M) {
	if dsn := os.Getenv(claimantEnv); dsn != "" {
		runClaimant(dsn) // never returns
	}
	var err error
	server, err = pgtest.Start(context.Background(), pgtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgstore tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := server.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pgstore tests:", err)
	}
	os.Exit(code)
}

func open(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the store suite, with restarts: Reopen closes the
// pool and opens the same database again.
func TestConformance(t *testing.T) {
	var mu sync.Mutex
	dsns := map[engine.Store]string{}
	storetest.Run(t,
		func(t *testing.T) engine.Store {
			dsn := server.NewDatabase(t)
			s := open(t, dsn)
			mu.Lock()
			dsns[s] = dsn
			mu.Unlock()
			return s
		},
		storetest.Reopen(func(t *testing.T, s engine.Store) engine.Store {
			mu.Lock()
			dsn := dsns[s]
			mu.Unlock()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			n := open(t, dsn)
			mu.Lock()
			dsns[n] = dsn
			mu.Unlock()
			return n
		}))
}

// TestConcurrentOpen: instances opening a fresh database at once apply
// each migration exactly once and all end up with the full schema.
func TestConcurrentOpen(t *testing.T) {
	dsn := server.NewDatabase(t)
	const n = 6
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = Open(context.Background(), dsn, Options{})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	rows, err := stores[0].pool.Query(context.Background(), `SELECT version FROM push2_schema ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != len(migrations) || versions[len(versions)-1] != SchemaVersion() {
		t.Fatalf("schema versions %v, want each of 1..%d once", versions, SchemaVersion())
	}
	// Every instance works on the one schema.
	for i, s := range stores {
		r := engine.StoredRegistration{Account: "juliet@capulet.lit", ID: fmt.Sprint("r", i), Created: time.Now(), Enable: "<enable/>"}
		if _, err := s.PutRegistration(r, 0); err != nil {
			t.Fatal(err)
		}
	}
	regs, err := stores[n-1].Registrations("juliet@capulet.lit")
	if err != nil || len(regs) != n {
		t.Fatalf("registrations %d %v, want %d", len(regs), err, n)
	}
}

// TestNewerSchemaRefused: a database migrated by a newer push2 is not
// touched by this one.
func TestNewerSchemaRefused(t *testing.T) {
	dsn := server.NewDatabase(t)
	s := open(t, dsn)
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO push2_schema (version, what) VALUES ($1, 'from the future')`, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(context.Background(), dsn, Options{}); err == nil {
		s.Close()
		t.Fatal("a newer schema was accepted")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}

// TestPasswordNotInErrors: a wrong password, an unreachable server and a
// malformed DSN give errors that name the server but never the password.
func TestPasswordNotInErrors(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	for _, dsn := range []string{
		fmt.Sprintf("postgres://push2:%s@127.0.0.1:%d/postgres?sslmode=disable", secret, server.Port()),
		fmt.Sprintf("postgres://push2:%s@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", secret),
		fmt.Sprintf("host=127.0.0.1 port=%d user=push2 password=%s dbname=postgres sslmode=disable", server.Port(), secret),
		fmt.Sprintf("postgres://push2:%s@127.0.0.1:%d/postgres?sslmode=bogus", secret, server.Port()),
		"postgres://push2:" + secret + "@[::1",
	} {
		s, err := Open(context.Background(), dsn, Options{Timeout: 5 * time.Second})
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s) succeeded", Redact(dsn))
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error shows the password: %v", err)
		}
		if got := Redact(dsn); strings.Contains(got, secret) {
			t.Errorf("Redact(%q) = %q", dsn, got)
		}
	}
}

// TestDatabaseDown: with the server stopped, calls fail with an error
// within the timeout (no hang) and work again once it is back.
func TestDatabaseDown(t *testing.T) {
	srv := pgtest.MustStart(t, pgtest.Options{})
	s, err := Open(context.Background(), srv.NewDatabase(t), Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := engine.StoredRegistration{Account: "juliet@capulet.lit", ID: "phone", Created: time.Now(), Enable: "<enable/>"}
	if _, err := s.PutRegistration(r, 0); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	r.ID = "tablet"
	if _, err := s.PutRegistration(r, 0); err == nil {
		t.Fatal("PutRegistration succeeded with the database down")
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := s.PutRegistration(r, 0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after the server came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	regs, err := s.Registrations("juliet@capulet.lit")
	if err != nil || len(regs) != 2 {
		t.Fatalf("after the outage: %d registrations, %v", len(regs), err)
	}
	s.Close()
	if _, err := s.Registrations("juliet@capulet.lit"); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

// TestUpgradeSchema: a database made by an older push2 (schema version 1,
// with records) is migrated to the current version at Open, its records
// kept and usable.
func TestUpgradeSchema(t *testing.T) {
	dsn := server.NewDatabase(t)
	ctx := context.Background()
	s := open(t, dsn)
	if _, err := s.pool.Exec(ctx, `DROP TABLE push2_schema, push2_registrations, push2_marks, push2_outbox, push2_reg_state, push2_disabled, push2_leader; DROP FUNCTION push2_record_push`); err != nil {
		t.Fatal(err)
	}
	if err := migrateTo(ctx, s.pool, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO push2_outbox (id, account, reg, dest, stanza, created, attempts, due, last_err)
		VALUES ('n1', 'juliet@capulet.lit', 'phone', 'pusher@push.example.com', '<message/>', now(), 0, now(), '')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dsn)
	defer s.Close()
	var v int
	if err := s.pool.QueryRow(ctx, `SELECT max(version) FROM push2_schema`).Scan(&v); err != nil || v != SchemaVersion() {
		t.Fatalf("schema version %d %v, want %d", v, err, SchemaVersion())
	}
	got, err := s.ClaimOutbox("me", time.Now().Add(time.Second), 10)
	if err != nil || len(got) != 1 || got[0].ID != "n1" {
		t.Fatalf("the old entry after the upgrade: %+v %v", got, err)
	}
}
