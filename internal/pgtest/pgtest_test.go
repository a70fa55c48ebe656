package pgtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestServer: a private cluster serves SQL on 127.0.0.1, keeps committed
// data across a restart on the same port, refuses a wrong password, and
// leaves nothing behind.
func TestServer(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := s.dir
	dsn := s.NewDatabase(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "push2" {
		t.Fatalf("current_user %q %v", user, err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if os.Geteuid() == 0 {
		if fi, err := os.Stat(s.dataDir); err != nil {
			t.Fatal(err)
		} else if uid := fileUID(fi); uid == 0 {
			t.Errorf("data directory owned by root: PostgreSQL must run unprivileged")
		}
	}

	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := pgxQuery(ctx, dsn, "SELECT v FROM t", &v); err != nil || v != 42 {
		t.Fatalf("after restart: %d %v", v, err)
	}
	bad := strings.Replace(dsn, s.password, "wrong", 1)
	if c, err := pgx.Connect(ctx, bad); err == nil {
		c.Close(ctx)
		t.Error("a wrong password was accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s left behind: %v", dir, err)
	}
	if c, err := pgx.Connect(ctx, dsn); err == nil {
		c.Close(ctx)
		t.Error("server still accepting connections after Close")
	}
}

func pgxQuery(ctx context.Context, dsn, q string, dst any) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.QueryRow(ctx, q).Scan(dst)
}
