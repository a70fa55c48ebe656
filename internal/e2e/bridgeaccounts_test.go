package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
)

// bridgeEvents returns push2d's count of stanza events received from the
// bridge (push2_bridge_events_total).
func bridgeEvents(t *testing.T, s *stack.Stack) int {
	t.Helper()
	m, err := s.Admin("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "push2_bridge_events_total "); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	t.Fatalf("no push2_bridge_events_total in the metrics:\n%s", grep(m, "push2_"))
	return 0
}

// bridgeBarrier returns once push2d has read everything c sent before:
// the IQ goes through the bridge to push2d on the same component stream,
// after the events the bridge sent for c's earlier stanzas.
func bridgeBarrier(t *testing.T, c *stack.Client) {
	t.Helper()
	if resp := iq(t, c, "set", `<disable xmlns="urn:xmpp:push2:0"/>`); resp.AttrValue("type") != "result" {
		t.Fatalf("barrier disable: %s", resp)
	}
}

// waitAccountList waits until the bridge has got push2d's whole list of
// accounts with registrations (it logs that at debug level).
func waitAccountList(t *testing.T, s *stack.Stack) {
	t.Helper()
	waitFor(t, 30*time.Second, func() bool {
		b, _ := os.ReadFile(s.Server.LogPath())
		return strings.Contains(string(b), "accounts with registrations")
	})
}

// TestNoEventsWithoutRegistration: a message to an account with no
// registration costs the bridge nothing: push2d gets no event at all for it
// (neither offline nor archive), while a message to an account with a
// registration is reported and pushed (issue 12 goal 1,
// docs/bridge-protocol.md "Accounts with registrations").
func TestNoEventsWithoutRegistration(t *testing.T) {
	eachServer(t, testNoEventsWithoutRegistration)
}

func testNoEventsWithoutRegistration(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	waitAccountList(t, s)
	mercutio := login(t, s, "mercutio", "nope", true) // exists, offline, no registration
	mercutio.Close()
	pusher, romeo := offlineWithRegistration(t, s, "filter-client")

	// A message to juliet (registered): its events reach push2d.
	bridgeBarrier(t, romeo)
	before := bridgeEvents(t, s)
	send(t, romeo, chat("juliet@"+domain, "f1", "to juliet"))
	waitNotification(t, pusher, 20*time.Second)
	bridgeBarrier(t, romeo)
	perMessage := bridgeEvents(t, s) - before
	if perMessage < 1 {
		t.Fatalf("a message to a registered account gave %d events", perMessage)
	}

	// Messages to mercutio (no registration), then one to juliet: only
	// juliet's events.
	before = bridgeEvents(t, s)
	for i := range 5 {
		send(t, romeo, chat("mercutio@"+domain, "m"+strconv.Itoa(i), "to mercutio"))
	}
	send(t, romeo, chat("juliet@"+domain, "f2", "to juliet again"))
	waitNotification(t, pusher, 20*time.Second)
	bridgeBarrier(t, romeo)
	if got := bridgeEvents(t, s) - before; got != perMessage {
		t.Errorf("5 messages to an account without registrations and 1 to juliet: %d events, want %d (juliet's only)", got, perMessage)
	}
	// Mercutio's messages are still stored offline, as without the bridge.
	mercutio = login(t, s, "mercutio", "back", true)
	expectBody(t, mercutio, "to mercutio")
}

// TestKillProsodyDuringBurst: Prosody is killed with SIGKILL in the middle
// of a burst of messages to an offline user with a registration, and
// started again on the same data. Every message it stored gets a push
// (issue 11 item 10): the bridge reports the stored messages of accounts
// with registrations again after the restart (push2d's dedupe drops those
// already pushed), and a notification counts as sent only once the bridge
// has routed it (push2d sends the others again after the reconnection).
// Exactly one notification per stored message: none lost, none pushed
// twice under two ids (a resend keeps its id and counts once).
func TestKillProsodyDuringBurst(t *testing.T) { eachProsody(t, testKillProsodyDuringBurst) }

func testKillProsodyDuringBurst(t *testing.T, p prosodytest.Version) {
	const burst, killAt = 300, 150
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	pusher, romeo := offlineWithRegistration(t, s, "kill-client")
	seen := map[string]bool{}
	collect := func(c *stack.Client, d time.Duration) {
		deadline := time.After(d)
		for {
			select {
			case m := <-c.Messages:
				if m.Child(stanza.NSPush2, "notification") != nil {
					seen[m.AttrValue("id")] = true
				}
			case <-deadline:
				return
			}
		}
	}
	for i := range killAt {
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("k%d", i), fmt.Sprintf("burst %d", i)))
	}
	// The kill lands while events and pushes are in flight: once Prosody
	// has stored a third of the messages.
	waitFor(t, 30*time.Second, func() bool {
		collect(pusher, 5*time.Millisecond)
		return countOfflineNow(s, "juliet") >= killAt/3
	})
	if err := s.Server.Kill(); err != nil {
		t.Fatal(err)
	}
	collect(pusher, 0)
	romeo.Close()
	pusher.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Server.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// The notifications routed to the push service while it was away are
	// in its offline storage; it gets them when it logs in again.
	pusher = login(t, s, "pusher", "svc2", true)
	romeo = login(t, s, "romeo", "orchard2", true)
	for i := killAt; i < burst; i++ {
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("k%d", i), fmt.Sprintf("burst %d", i)))
	}
	bridgeBarrier(t, romeo)
	// What Prosody stored for juliet, read without taking it out of the
	// offline store: juliet is not logged in until the end.
	stored := countOffline(t, s, "juliet")
	if stored <= burst-killAt {
		t.Fatalf("only %d messages stored; the kill came too early to test anything", stored)
	}
	for deadline := time.Now().Add(45 * time.Second); len(seen) < stored && time.Now().Before(deadline); {
		collect(pusher, 200*time.Millisecond)
	}
	collect(pusher, 2*time.Second)
	t.Logf("SIGKILL of Prosody after %d of %d messages: %d stored, %d distinct notifications", killAt, burst, stored, len(seen))
	if len(seen) != stored {
		t.Errorf("%d distinct notifications for %d stored messages", len(seen), stored)
	}
}

// countOffline returns how many distinct "burst N" messages Prosody's
// internal storage holds offline for the user (after the stanzas already
// sent were handled: call bridgeBarrier first).
func countOffline(t *testing.T, s *stack.Stack, user string) int {
	t.Helper()
	n, err := readOffline(s, user)
	if err != nil {
		t.Fatalf("offline store: %v", err)
	}
	return n
}

func countOfflineNow(s *stack.Stack, user string) int {
	n, _ := readOffline(s, user)
	return n
}

func readOffline(s *stack.Stack, user string) (int, error) {
	dir := filepath.Join(s.Prosody.DataDir(), strings.ReplaceAll(s.Server.Domain(), ".", "%2e"), "offline")
	b, err := os.ReadFile(filepath.Join(dir, user+".list"))
	if err != nil {
		return 0, err
	}
	ids := map[string]bool{}
	for _, m := range regexp.MustCompile(`burst (\d+)`).FindAllStringSubmatch(string(b), -1) {
		ids[m[1]] = true
	}
	return len(ids), nil
}

// TestKillProsodyHibernated: messages that only a hibernated session's
// XEP-0198 queue held (they are archived, not stored offline) still get
// their push when Prosody is killed before push2d saw them (issue 11 item
// 10). push2d is down while they arrive, so their events are only in the
// bridge's memory when Prosody dies; after the restart the bridge reports
// again what the archive took since its stored watermark (the time before
// which push2d had acked every event), and push2d pushes each exactly once.
func TestKillProsodyHibernated(t *testing.T) { eachProsody(t, testKillProsodyHibernated) }

func testKillProsodyHibernated(t *testing.T, p prosodytest.Version) {
	const queued = 5
	s := startStack(t, p, stack.Options{ProsodyConfig: "smacks_hibernation_time = 600\n"})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)

	// An event acked by push2d makes the bridge store its watermark.
	benvolio := login(t, s, "benvolio", "phone", true)
	if resp := iq(t, benvolio, "set", enableFor("pusher@"+domain, "token-benvolio")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}
	benvolio.Close()
	time.Sleep(300 * time.Millisecond)
	send(t, romeo, chat("benvolio@"+domain, "b1", "watermark"))
	if n := waitNotification(t, pusher, 15*time.Second); clientOf(n) != "token-benvolio" {
		t.Fatalf("notification: %s", n)
	}
	watermark := filepath.Join(s.Prosody.DataDir(), strings.ReplaceAll(domain, ".", "%2e"), "push2_bridge.dat")
	waitFor(t, 20*time.Second, func() bool {
		_, err := os.Stat(watermark)
		return err == nil
	})

	juliet := startJS(t, s, "juliet", jsOptions{Resource: "phone"})
	juliet.wait("sm-enabled", 10*time.Second, nil)
	juliet.send(presence())
	if resp := juliet.iq("set", enableFor("pusher@"+domain, "token-phone")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable answered %s", resp)
	}
	juliet.do(map[string]string{"cmd": "drop"})
	time.Sleep(time.Second)
	if err := s.StopPush2d(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for i := range queued {
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("q%d", i), fmt.Sprintf("queued %d", i)))
	}
	// Answered once Prosody handled everything romeo sent before.
	if resp := iq(t, romeo, "get", `<ping xmlns="urn:xmpp:ping"/>`); resp.AttrValue("type") != "result" {
		t.Fatalf("ping: %s", resp)
	}
	if err := s.Server.Kill(); err != nil {
		t.Fatal(err)
	}
	romeo.Close()
	pusher.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Server.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.StartPush2d(ctx); err != nil {
		t.Fatal(err)
	}
	pusher = login(t, s, "pusher", "svc2", true)
	seen := map[string]bool{}
	collect := func(d time.Duration) {
		for _, n := range notifications(pusher, d) {
			if clientOf(n) == "token-phone" {
				seen[n.AttrValue("id")] = true
			}
		}
	}
	for deadline := time.Now().Add(45 * time.Second); len(seen) < queued && time.Now().Before(deadline); {
		collect(200 * time.Millisecond)
	}
	collect(2 * time.Second)
	if len(seen) != queued {
		t.Errorf("%d distinct notifications for the %d messages the hibernated session's queue held", len(seen), queued)
	}
	if !strings.Contains(s.Server.LogTail(400), "archived messages of") {
		t.Errorf("the bridge did not log its re-report:\n%s", s.Server.LogTail(40))
	}
}
