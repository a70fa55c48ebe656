package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

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
		b, _ := os.ReadFile(s.Prosody.LogPath())
		return strings.Contains(string(b), "accounts with registrations")
	})
}

// TestNoEventsWithoutRegistration: a message to an account with no
// registration costs the bridge nothing: push2d gets no event at all for it
// (neither offline nor archive), while a message to an account with a
// registration is reported and pushed (issue 12 goal 1,
// docs/bridge-protocol.md "Accounts with registrations").
func TestNoEventsWithoutRegistration(t *testing.T) {
	eachProsody(t, testNoEventsWithoutRegistration)
}

func testNoEventsWithoutRegistration(t *testing.T, p prosodytest.Version) {
	s := startStack(t, p, stack.Options{})
	domain := s.Prosody.Domain()
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
