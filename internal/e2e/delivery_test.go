package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/stack"
)

// fastRetries makes the outbox's timings short enough for a test.
const fastRetries = `
[delivery]
retry_base_delay = "200ms"
retry_max_delay = "1s"
error_window = "2s"
max_attempts = 4
max_errors = 3
`

// answerError makes the push service reply to a notification with an error,
// as a push service refusing or deferring it would.
func answerError(t *testing.T, c *stack.Client, n *stanza.Element, typ, cond string) {
	t.Helper()
	e := stanza.NewElement(stanza.NSClient, "message", "to", n.AttrValue("from"), "id", n.AttrValue("id"), "type", "error")
	er := stanza.NewElement(stanza.NSClient, "error", "type", typ)
	er.Append(stanza.NewElement(stanza.NSStanzaError, cond))
	e.Append(er)
	send(t, c, e)
}

func offlineWithRegistration(t *testing.T, s *stack.Stack, client string) (pusher, romeo *stack.Client) {
	t.Helper()
	domain := s.Server.Domain()
	pusher = login(t, s, "pusher", "svc", true)
	romeo = login(t, s, "romeo", "orchard", true)
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, client)); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	juliet.Close()
	time.Sleep(300 * time.Millisecond)
	return pusher, romeo
}

// TestWaitErrorRetried: the push service answers wait twice; the same
// notification (same id) comes again each time, then is delivered.
func TestWaitErrorRetried(t *testing.T) { eachServer(t, testWaitErrorRetried) }

func testWaitErrorRetried(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{Push2dConfig: fastRetries})
	pusher, romeo := offlineWithRegistration(t, s, "wait-client")
	send(t, romeo, chat("juliet@"+s.Server.Domain(), "w1", "retry me"))
	first := waitNotification(t, pusher, 15*time.Second)
	answerError(t, pusher, first, "wait", "resource-constraint")
	second := waitNotification(t, pusher, 10*time.Second)
	if second.AttrValue("id") != first.AttrValue("id") {
		t.Errorf("retry has id %q, want %q", second.AttrValue("id"), first.AttrValue("id"))
	}
	answerError(t, pusher, second, "wait", "internal-server-error")
	third := waitNotification(t, pusher, 10*time.Second)
	if third.AttrValue("id") != first.AttrValue("id") {
		t.Errorf("second retry has id %q", third.AttrValue("id"))
	}
	// No error this time: after the window it is delivered, nothing more
	// is sent, and the registration is fine.
	noNotification(t, pusher, 3*time.Second)
	waitFor(t, 10*time.Second, func() bool {
		out, _ := s.Admin("/outbox")
		return strings.Contains(out, `"entries": 0`)
	})
	m, _ := s.Admin("/metrics")
	for _, want := range []string{`push2_outbox_total{event="retry"} 2`, `push2_outbox_total{event="sent"} 3`, `push2_outbox_total{event="delivered"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grep(m, "push2_outbox"))
		}
	}
}

// TestCancelErrorDisables: cancel errors are never retried; after
// max_errors of them the registration is disabled, and the operator can see
// why.
func TestCancelErrorDisables(t *testing.T) { eachServer(t, testCancelErrorDisables) }

func testCancelErrorDisables(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{Push2dConfig: fastRetries})
	domain := s.Server.Domain()
	pusher, romeo := offlineWithRegistration(t, s, "cancel-client")
	for i := 1; i <= 3; i++ {
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("c%d", i), "refused"))
		n := waitNotification(t, pusher, 15*time.Second)
		answerError(t, pusher, n, "cancel", "item-not-found")
		if i < 3 {
			noNotification(t, pusher, time.Second) // not retried
		}
	}
	waitFor(t, 10*time.Second, func() bool {
		out, _ := s.Admin("/disabled?account=juliet@" + domain)
		return strings.Contains(out, "item-not-found") && strings.Contains(out, "3 notifications in a row failed")
	})
	if regs, _ := s.Admin("/registrations?account=juliet@" + domain); strings.TrimSpace(regs) != "[]" {
		t.Errorf("still registered: %s", regs)
	}
	send(t, romeo, chat("juliet@"+domain, "c4", "after disable"))
	noNotification(t, pusher, 2*time.Second)
}

// TestKillDuringBurst: push2d is killed with SIGKILL in the middle of a
// burst of 1000 offline messages and restarted. Every message produces a
// notification (the bridge replays unacked events, the outbox resends what
// it had accepted); duplicates are possible for notifications sent right
// before the kill, and are counted.
func TestKillDuringBurst(t *testing.T) { eachServer(t, testKillDuringBurst) }

func testKillDuringBurst(t *testing.T, p server) {
	const burst = 1000
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	pusher, romeo := offlineWithRegistration(t, s, "burst-client")
	seen := map[string]int{}
	collect := func(d time.Duration) {
		deadline := time.After(d)
		for {
			select {
			case m := <-pusher.Messages:
				if m.Child(stanza.NSPush2, "notification") != nil {
					seen[m.AttrValue("id")]++
				}
			case <-deadline:
				return
			}
		}
	}
	for i := 0; i < burst; i++ {
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("k%d", i), fmt.Sprintf("burst %d", i)))
		if i == burst/2 {
			if err := s.StopPush2d(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.StartPush2d(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 90*time.Second, func() bool {
		collect(200 * time.Millisecond)
		return len(seen) >= burst
	})
	collect(2 * time.Second)
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("SIGKILL at message %d of %d: %d distinct notifications, %d duplicates", burst/2, burst, len(seen), dups)
	if len(seen) != burst {
		t.Errorf("%d distinct notifications for %d messages", len(seen), burst)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
