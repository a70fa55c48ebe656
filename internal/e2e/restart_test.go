package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/internal/stack"
)

// TestServerRestart: Prosody goes away and comes back; push2d reconnects by
// itself (with back-off), registrations survive, and pushes flow again.
// Then push2d stops cleanly on SIGTERM.
func TestServerRestart(t *testing.T) { eachServer(t, testServerRestart) }

func testServerRestart(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, "restart-device")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	juliet.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Server.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool {
		h, err := s.Admin("/healthz")
		return err == nil && strings.TrimSpace(h) == "ok"
	})
	if !strings.Contains(s.Push2dLog(), "reconnecting") {
		t.Error("push2d did not log the lost connection")
	}
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	send(t, romeo, chat("juliet@"+domain, "after-restart", "still there?"))
	n := waitNotification(t, pusher, 20*time.Second)
	if !strings.Contains(n.String(), "restart-device") {
		t.Errorf("notification: %s", n)
	}

	if err := s.StopPush2d(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Push2dLog(), "push2d stopped") {
		t.Errorf("push2d did not stop cleanly:\n%s", tail(s.Push2dLog(), 10))
	}
}
