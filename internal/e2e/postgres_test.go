package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/push2/push2/internal/pgtest"
	"github.com/push2/push2/internal/stack"
)

// TestPostgresStore: push2d with [store] kind = "postgres" on a private
// PostgreSQL 15 cluster. A client enables; the registration is in the
// database (not in a Pebble directory); push2d is stopped and started
// again; a message to the user still gets its push. The database password
// appears nowhere in push2d's log.
func TestPostgresStore(t *testing.T) { eachServer(t, testPostgresStore) }

func testPostgresStore(t *testing.T, p server) {
	pg := pgtest.MustStart(t, pgtest.Options{})
	dsn := pg.NewDatabase(t)
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	storeDir := filepath.Join(t.TempDir(), "unused-pebble")
	s := startStack(t, p, stack.Options{StoreDir: storeDir, StoreConfig: "kind = \"postgres\"\ndsn_file = \"" + dsnFile + "\"\n"})
	domain := s.Server.Domain()
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, "pg-device")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	juliet.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM push2_registrations WHERE account = $1`, "juliet@"+domain).Scan(&n); err != nil || n != 1 {
		t.Fatalf("registrations of juliet in PostgreSQL: %d %v, want 1", n, err)
	}
	if _, err := os.Stat(storeDir); !os.IsNotExist(err) {
		t.Errorf("push2d made a Pebble store at %s with kind = postgres: %v", storeDir, err)
	}

	if err := s.StopPush2d(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := s.StartPush2d(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Push2dLog(), "registrations=1") {
		t.Errorf("push2d did not log the registration found in the database:\n%s", tail(s.Push2dLog(), 20))
	}
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	send(t, romeo, chat("juliet@"+domain, "after-pg-restart", "still there?"))
	if note := waitNotification(t, pusher, 20*time.Second); !strings.Contains(note.String(), "pg-device") {
		t.Errorf("notification: %s", note)
	}
	u, _ := pgx.ParseConfig(dsn)
	if strings.Contains(s.Push2dLog(), u.Password) {
		t.Error("push2d's log shows the database password")
	}
}
