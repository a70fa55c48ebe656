package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/stack"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
)

// otherDomain is a second virtual host of the test server, without the
// bridge (stack.Options.ExtraHosts): its users are strangers to the
// victim's server, as users of another server would be (stanzas between
// two hosts of one Prosody or one ejabberd take the same route as from a
// remote server: to the domain, stamped with the sender's full JID).
const otherDomain = "elsewhere.localhost"

// loginElsewhere logs in localpart@otherDomain and returns its session (not
// served: it only sends).
func loginElsewhere(t *testing.T, s *stack.Stack, localpart string) *xmpp.Session {
	t.Helper()
	pw := localpart + "-password"
	if err := s.Server.RegisterUser(localpart, otherDomain, pw); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := s.Server.DialClient(ctx, jid.MustParse(localpart+"@"+otherDomain+"/attack"), pw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestForgedDeliveryErrors (issue 11, Security 1): a user of another domain
// and another user of the victim's own server send the victim's server 16
// error replies each with the id of every notification the victim's push
// service gets, more than enough to disable the registration (max_errors =
// 3) if they counted. They do not: only the push service a notification
// went to can report an error for it. The registration stays enabled and
// keeps getting pushes, the push service's own error still counts, and every
// notification id is a fresh version 4 UUID.
func TestForgedDeliveryErrors(t *testing.T) { eachServer(t, testForgedDeliveryErrors) }

func testForgedDeliveryErrors(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{Push2dConfig: fastRetries, ExtraHosts: []string{otherDomain}})
	domain := s.Server.Domain()
	pusher, romeo := offlineWithRegistration(t, s, "forged-client")
	mallory := loginElsewhere(t, s, "mallory")
	forge := func(id string) {
		for i := 0; i < 16; i++ {
			e := stanza.NewElement(stanza.NSClient, "message", "to", domain, "id", id, "type", "error")
			er := stanza.NewElement(stanza.NSClient, "error", "type", "cancel")
			er.Append(stanza.NewElement(stanza.NSStanzaError, "item-not-found"))
			e.Append(er)
			if err := mallory.Send(t.Context(), e.TokenReader()); err != nil {
				t.Fatal(err)
			}
			send(t, romeo, e) // a user of the victim's own server
		}
	}
	ids := map[string]bool{}
	for i := 1; i <= 4; i++ {
		send(t, romeo, chat("juliet@"+domain, fmt.Sprintf("f%d", i), "forged errors follow"))
		n := waitNotification(t, pusher, 15*time.Second)
		id := n.AttrValue("id")
		if !uuidV4.MatchString(id) {
			t.Errorf("notification id %q is not a version 4 UUID", id)
		}
		if ids[id] {
			t.Errorf("notification id %q used twice", id)
		}
		ids[id] = true
		forge(id)
		// Not retried: no error counted, so nothing is sent again.
		noNotification(t, pusher, time.Second)
	}
	// The window passes without a genuine error: all delivered.
	waitFor(t, 10*time.Second, func() bool {
		out, _ := s.Admin("/outbox")
		return strings.Contains(out, `"entries": 0`)
	})
	if regs, _ := s.Admin("/registrations?account=juliet@" + domain); !strings.Contains(regs, "urn:xmpp:push2:match:important") {
		t.Fatalf("registration gone after forged errors: %s", regs)
	}
	if out, _ := s.Admin("/disabled?account=juliet@" + domain); strings.Contains(out, "item-not-found") {
		t.Fatalf("disabled by forged errors: %s", out)
	}
	m, _ := s.Admin("/metrics")
	if strings.Contains(m, "push2_delivery_errors_total{") || !strings.Contains(m, `push2_outbox_total{event="delivered"} 4`) {
		t.Errorf("forged errors counted:\n%s", grep(m, "push2_"))
	}
	if !strings.Contains(s.Server.LogTail(2000), "not from its push service") {
		t.Errorf("the bridge did not log the forged errors")
	}
	// Still pushed, and the service's own error counts.
	send(t, romeo, chat("juliet@"+domain, "f-last", "still pushed"))
	n := waitNotification(t, pusher, 15*time.Second)
	if ids[n.AttrValue("id")] {
		t.Errorf("id %q reused", n.AttrValue("id"))
	}
	answerError(t, pusher, n, "cancel", "item-not-found")
	waitFor(t, 10*time.Second, func() bool {
		m, _ := s.Admin("/metrics")
		return strings.Contains(m, `push2_delivery_errors_total{condition="item-not-found",type="cancel"} 1`)
	})
}
