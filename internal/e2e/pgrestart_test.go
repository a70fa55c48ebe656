package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/push2/push2/internal/pgtest"
	"github.com/push2/push2/internal/stack"
)

// TestPostgresRestart: PostgreSQL stops in the middle of a burst of
// messages and comes back. An enable during the outage is answered with a
// wait error (the client tries again later); push2d reconnects to the
// database by itself, and every message of the burst gets its push: the
// events whose pushes could not be recorded are evaluated again, not
// acknowledged as done.
func TestPostgresRestart(t *testing.T) { eachServer(t, testPostgresRestart) }

func testPostgresRestart(t *testing.T, p server) {
	pg := pgtest.MustStart(t, pgtest.Options{})
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(pg.NewDatabase(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startStack(t, p, stack.Options{StoreConfig: "kind = \"postgres\"\ndsn_file = \"" + dsnFile + "\"\n"})
	domain := s.Server.Domain()
	pusher, romeo := offlineWithRegistration(t, s, "pg-restart-device")
	nurse := login(t, s, "nurse", "hall", true)

	const total, stopAt = 60, 20
	ids := map[string]int{}
	count := 0
	collect := func(until func() bool, within time.Duration) {
		deadline := time.After(within)
		for !until() {
			select {
			case m := <-pusher.Messages:
				if m.Child("urn:xmpp:push2:0", "notification") != nil {
					ids[m.AttrValue("id")]++
					count++
				}
			case <-deadline:
				return
			}
		}
	}
	for i := range stopAt {
		send(t, romeo, chat("juliet@"+domain, "p"+strconv.Itoa(i), "before "+strconv.Itoa(i)))
	}
	collect(func() bool { return count >= stopAt }, 30*time.Second)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := stopAt; i < total; i++ {
		send(t, romeo, chat("juliet@"+domain, "p"+strconv.Itoa(i), "during "+strconv.Itoa(i)))
	}
	resp := iq(t, nurse, "set", enableFor("pusher@"+domain, "nurse-device"))
	if resp.AttrValue("type") != "error" || resp.Child("jabber:client", "error") == nil || resp.Child("jabber:client", "error").AttrValue("type") != "wait" {
		t.Errorf("enable with the database down answered %s, want a wait error", resp)
	}
	time.Sleep(time.Second) // the burst's events meet the outage
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	collect(func() bool { return len(ids) >= total }, 60*time.Second)
	if len(ids) != total {
		t.Errorf("%d distinct notifications for %d messages", len(ids), total)
	}
	if resp := iq(t, nurse, "set", enableFor("pusher@"+domain, "nurse-device")); resp.AttrValue("type") != "result" {
		t.Errorf("enable after the database came back: %s", resp)
	}
	t.Logf("%d messages, %d notifications (%d distinct)", total, count, len(ids))
}
