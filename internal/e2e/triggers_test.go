package e2e

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/prosodytest"
	"github.com/push2/push2/internal/stack"
)

// The tests in this file cover every trigger the bridge reports (offline,
// archived, hibernated, ack-delayed, groupchat), SASL2/Bind2 inline enable,
// grace, room nicks and the bridge's buffer while push2d is away, end to
// end: Prosody with the bridge, push2d, mellium as the contact and the push
// service, and xmpp.js (jsClient) as the user's device where stream
// management or SASL2 is needed.

// presence is an initial presence stanza.
func presence() *stanza.Element { return stanza.NewElement(stanza.NSClient, "presence") }

// enableWith is an <enable/> for service/client with the given match
// children (grace, filters) and notify-only.
func enableWith(service, client, profile, matchChildren string) string {
	return `<enable xmlns="urn:xmpp:push2:0"><service>` + service + `</service><client>` + client + `</client>` +
		`<match profile="` + profile + `">` + matchChildren + `<send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`
}

// notifications collects the notifications that arrive within d.
func notifications(c *stack.Client, d time.Duration) []*stanza.Element {
	var got []*stanza.Element
	deadline := time.After(d)
	for {
		select {
		case m := <-c.Messages:
			if m.Child(stanza.NSPush2, "notification") != nil {
				got = append(got, m)
			}
		case <-deadline:
			return got
		}
	}
}

func clientOf(n *stanza.Element) string {
	return n.Child(stanza.NSPush2, "notification").ChildText(stanza.NSPush2, "client")
}

// expectOnePush waits for a notification to client and checks that no
// other one follows within quiet.
func expectOnePush(t *testing.T, pusher *stack.Client, client string, quiet time.Duration) *stanza.Element {
	t.Helper()
	n := waitNotification(t, pusher, 15*time.Second)
	if got := clientOf(n); got != client {
		t.Fatalf("notification for %q, want %q: %s", got, client, n)
	}
	if more := notifications(pusher, quiet); len(more) > 0 {
		t.Fatalf("%d more notifications, want exactly one: %v", len(more), more)
	}
	return n
}

func outcomes(s *stack.Stack, trigger string) int {
	return strings.Count(s.Push2dLog(), "trigger="+trigger+" ")
}

// TestHibernatedPush: a device with stream management loses its TCP
// connection without closing the stream; Prosody hibernates the session.
// A message for it is pushed once (the hibernated queue and the archive
// both take it, the bridge reports it once), the session outlives smacks_hibernation_time until that
// first push, and the device resumes and gets the message. After a push the
// normal hibernation timeout applies again: a second message is pushed, the
// session then expires, the message goes to offline storage (reported
// again, not pushed again) and reaches the device when it logs in anew.
func TestHibernatedPush(t *testing.T) { eachServer(t, testHibernatedPush) }

func testHibernatedPush(t *testing.T, p server) {
	const hibernation = 10 // seconds (longer than a login on a loaded machine); mod_smacks' watchdog fires 1-2 s late
	s := startStack(t, p, stack.Options{ProsodyConfig: "smacks_hibernation_time = " + strconv.Itoa(hibernation) + "\n", EjabberdResumeTimeout: hibernation * time.Second})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	juliet := startJS(t, s, "juliet", jsOptions{Resource: "phone"})
	juliet.wait("sm-enabled", 10*time.Second, nil)
	juliet.send(presence())
	if resp := juliet.iq("set", enableFor("pusher@"+domain, "token-phone")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable answered %s", resp)
	}

	// A: hibernated longer than smacks_hibernation_time, then a message.
	juliet.do(map[string]string{"cmd": "drop"})
	time.Sleep((hibernation + 3) * time.Second)
	send(t, romeo, chat("juliet@"+domain, "h1", "Are you there?"))
	n := waitNotification(t, pusher, 15*time.Second)
	if clientOf(n) != "token-phone" {
		t.Fatalf("notification: %s", n)
	}
	juliet.do(map[string]string{"cmd": "reconnect"})
	juliet.wait("resumed", 15*time.Second, nil)
	juliet.waitBody("Are you there?", 10*time.Second)
	if more := notifications(pusher, 2*time.Second); len(more) > 0 {
		t.Fatalf("more than one push for one stanza: %v", more)
	}
	// One event for the stanza the archive and the hibernated queue both
	// took: hibernated, carrying the archive id.
	if h, a := outcomes(s, "hibernated"), outcomes(s, "archived"); h != 1 || a != 0 {
		t.Errorf("outcomes: %d hibernated, %d archived, want one hibernated event and no archived one:\n%s", h, a, grep(s.Push2dLog(), "outcome"))
	}

	// B: after the first push the normal timeout runs: the session expires.
	juliet.do(map[string]string{"cmd": "drop"})
	time.Sleep(500 * time.Millisecond)
	send(t, romeo, chat("juliet@"+domain, "h2", "Still there?"))
	expectOnePush(t, pusher, "token-phone", (hibernation+4)*time.Second)
	if p == ejabberd {
		// ejabberd drops the unacked messages of a session that timed out
		// when its archive has them (the client fetches them from MAM):
		// no offline storage, no offline event. That the normal timeout
		// ran shows in its log.
		waitFor(t, (hibernation+6)*time.Second, func() bool {
			return strings.Count(s.Server.LogTail(-1), "Timed out waiting for stream resumption") == 1
		})
		return
	}
	if outcomes(s, "offline") == 0 {
		t.Errorf("the expired session's message was not reported as offline:\n%s", grep(s.Push2dLog(), "outcome"))
	}
	juliet.relogin()
	juliet.waitBody("Still there?", 10*time.Second)
}

// TestAckDelayedPush: a live session stops acking (its network died but
// the TCP connection looks alive). After smacks_max_ack_delay the unacked
// message is pushed to that session's registration, and so is every message
// sent to it while it still owes the ack. Once it acks again, messages it
// gets are not pushed (its session is live).
func TestAckDelayedPush(t *testing.T) { eachProsody(t, testAckDelayedPush) }

func testAckDelayedPush(t *testing.T, p prosodytest.Version) {
	s := startStack(t, p, stack.Options{ProsodyConfig: "smacks_max_ack_delay = 1\n"})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	juliet := startJS(t, s, "juliet", jsOptions{Resource: "tablet"})
	juliet.wait("sm-enabled", 10*time.Second, nil)
	juliet.send(presence())
	if resp := juliet.iq("set", enableFor("pusher@"+domain, "token-tablet")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable answered %s", resp)
	}

	juliet.do(map[string]string{"cmd": "noack"})
	send(t, romeo, chat("juliet@"+domain, "a1", "Wake up"))
	juliet.waitBody("Wake up", 10*time.Second)
	expectOnePush(t, pusher, "token-tablet", 2*time.Second)

	send(t, romeo, chat("juliet@"+domain, "a2", "Wake up, I said"))
	juliet.waitBody("Wake up, I said", 10*time.Second)
	expectOnePush(t, pusher, "token-tablet", 2*time.Second)
	if n := outcomes(s, "ack-delayed"); n < 2 {
		t.Errorf("%d ack-delayed outcomes, want 2:\n%s", n, grep(s.Push2dLog(), "outcome"))
	}

	juliet.do(map[string]string{"cmd": "ack"})
	time.Sleep(300 * time.Millisecond)
	send(t, romeo, chat("juliet@"+domain, "a3", "Good, you are back"))
	juliet.waitBody("Good, you are back", 10*time.Second)
	noNotification(t, pusher, 3*time.Second)
}

// TestSASL2InlineEnable: a real SASL2 client (xmpp.js) inlines <enable/>
// in its Bind2 request; push2d's answer comes back inside <bound/> in the
// same round trip, and the registration is keyed by the SASL2 client id
// (<user-agent id=…>), not by the resource. A refused inline enable gets
// push2d's error there and stores nothing.
func TestSASL2InlineEnable(t *testing.T) { eachServer(t, testSASL2InlineEnable) }

func testSASL2InlineEnable(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{ProsodyConfig: `modules_enabled = { "sasl2"; "sasl2_bind2" }` + "\n"})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)

	const clientID = "d4c0ffee-juliet-phone"
	juliet := startJS(t, s, "juliet", jsOptions{Resource: "Phone", ClientID: clientID, InlinePush: enableFor("pusher@"+domain, "token-sasl2")})
	answer, err := stanza.Parse([]byte(juliet.wait("push2-inline", 5*time.Second, nil).XML))
	if err != nil || !answer.Is(stanza.NSPush2, "enabled") {
		t.Fatalf("inline answer %v (%v), want <enabled xmlns=%q/>", answer, err, stanza.NSPush2)
	}
	if strings.HasSuffix(juliet.jid, "/"+clientID) {
		t.Fatalf("bound to %s: the test needs a resource other than the client id", juliet.jid)
	}
	regs, err := s.Admin("/registrations?account=juliet@" + domain)
	if err != nil || !strings.Contains(regs, `"id": "`+clientID+`"`) {
		t.Fatalf("registrations %s (%v), want id %q", regs, err, clientID)
	}

	juliet.command(map[string]string{"cmd": "stop"})
	juliet.wait("stopped", 10*time.Second, nil)
	time.Sleep(300 * time.Millisecond)
	send(t, romeo, chat("juliet@"+domain, "s1", "Hello SASL2"))
	expectOnePush(t, pusher, "token-sasl2", 2*time.Second)

	bad := `<enable xmlns="urn:xmpp:push2:0"><service>pusher@` + domain + `</service><client>x</client>` +
		`<match profile="urn:example:nope"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`
	nurse := startJS(t, s, "nurse", jsOptions{Resource: "Pager", ClientID: "nurse-pager", InlinePush: bad})
	answer, err = stanza.Parse([]byte(nurse.wait("push2-inline", 5*time.Second, nil).XML))
	if err != nil || !answer.Is(stanza.NSPush2, "failed") || answer.Child("", "error").Child(stanza.NSStanzaError, "feature-not-implemented") == nil {
		t.Fatalf("inline answer %v (%v), want <failed/> with feature-not-implemented", answer, err)
	}
	if regs, _ := s.Admin("/registrations?account=nurse@" + domain); strings.TrimSpace(regs) != "[]" {
		t.Fatalf("a refused inline enable stored %s", regs)
	}
}

// TestGrace: the user writes from a laptop; a message that arrives within
// the phone registration's <grace/> period is not pushed to the phone
// (the laptop gets it), one after the period is.
func TestGrace(t *testing.T) { eachServer(t, testGrace) }

func testGrace(t *testing.T, p server) {
	const grace = 3 * time.Second
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	phone := login(t, s, "juliet", "phone", true)
	if resp := iq(t, phone, "set", enableWith("pusher@"+domain, "token-grace", "urn:xmpp:push2:match:important", "<grace>3</grace>")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable answered %s", resp)
	}
	phone.Close()
	laptop := login(t, s, "juliet", "laptop", true)
	time.Sleep(300 * time.Millisecond)

	send(t, laptop, chat("romeo@"+domain, "g0", "I am on my laptop"))
	active := time.Now()
	time.Sleep(300 * time.Millisecond)
	send(t, romeo, chat("juliet@"+domain, "g1", "Hello?"))
	expectBody(t, laptop, "Hello?")
	noNotification(t, pusher, time.Until(active.Add(grace-time.Second)))
	if !strings.Contains(s.Push2dLog(), "grace: another session") {
		t.Errorf("no grace outcome:\n%s", grep(s.Push2dLog(), "outcome"))
	}

	time.Sleep(time.Until(active.Add(grace + 500*time.Millisecond)))
	send(t, romeo, chat("juliet@"+domain, "g2", "Hello again"))
	expectBody(t, laptop, "Hello again")
	expectOnePush(t, pusher, "token-grace", time.Second)
}

// TestMUCMentionWithNick: the user joins a room as "Jules" (not its
// localpart), registers with a filter that pushes the room on mentions only,
// and its device drops off (hibernated). A room message that does not
// mention the nick is not pushed; one that does is, once: the bridge
// learnt the nick from the user's presence and passes it with the event.
func TestMUCMentionWithNick(t *testing.T) { eachServer(t, testMUCMentionWithNick) }

func testMUCMentionWithNick(t *testing.T, p server) {
	const room = "balcony@conference.localhost"
	s := startStack(t, p, stack.Options{MUC: "conference.localhost"})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	juliet := startJS(t, s, "juliet", jsOptions{Resource: "phone"})
	juliet.wait("sm-enabled", 10*time.Second, nil)
	juliet.send(presence())

	join := func(nick string) *stanza.Element {
		p := stanza.NewElement(stanza.NSClient, "presence", "to", room+"/"+nick)
		p.Append(stanza.NewElement("http://jabber.org/protocol/muc", "x"))
		return p
	}
	fromRoom := func(nick string) func(*stanza.Element) bool {
		return func(el *stanza.Element) bool {
			return el.Name.Local == "presence" && el.AttrValue("from") == room+"/"+nick && el.AttrValue("type") == ""
		}
	}
	juliet.send(join("Jules"))
	juliet.waitStanza(10*time.Second, fromRoom("Jules"))
	filter := `<filter jid="` + room + `"><mention/></filter>`
	if resp := juliet.iq("set", enableWith("pusher@"+domain, "token-muc", "urn:xmpp:push2:match:important", filter)); resp.AttrValue("type") != "result" {
		t.Fatalf("enable answered %s", resp)
	}
	send(t, romeo, join("Romeo"))
	juliet.waitStanza(10*time.Second, fromRoom("Romeo"))

	juliet.do(map[string]string{"cmd": "drop"})
	time.Sleep(500 * time.Millisecond)
	groupchat := func(id, body string) *stanza.Element {
		m := stanza.NewElement(stanza.NSClient, "message", "to", room, "type", "groupchat", "id", id)
		m.Append(stanza.NewElement(stanza.NSClient, "body").WithText(body))
		return m
	}
	send(t, romeo, groupchat("r1", "Good morning, juliet and all"))
	noNotification(t, pusher, 2*time.Second)
	send(t, romeo, groupchat("r2", "Jules, come to the window"))
	expectOnePush(t, pusher, "token-muc", 2*time.Second)
	if !strings.Contains(s.Push2dLog(), "trigger=groupchat") {
		t.Errorf("no groupchat outcome:\n%s", grep(s.Push2dLog(), "outcome"))
	}

	juliet.do(map[string]string{"cmd": "reconnect"})
	juliet.wait("resumed", 15*time.Second, nil)
	juliet.waitBody("Jules, come to the window", 10*time.Second)
}

// TestOneStanzaManyTriggers: a message for an account with no session is
// seen by offline storage and by the archive in one turn of Prosody's
// event loop; the bridge reports it once, as an offline event carrying the
// archive id (docs/bridge-protocol.md "One event per stanza"), and push2d
// pushes it once per registration: the registration's archived profile
// pushes only a stanza with an archive id.
func TestOneStanzaManyTriggers(t *testing.T) { eachServer(t, testOneStanzaManyTriggers) }

func testOneStanzaManyTriggers(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	juliet := login(t, s, "juliet", "balcony", true)
	// "archived" pushes from either trigger: both see the archive id.
	if resp := iq(t, juliet, "set", enableWith("pusher@"+domain, "token-archived", "urn:xmpp:push2:match:archived", "")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable answered %s", resp)
	}
	juliet.Close()
	time.Sleep(300 * time.Millisecond)

	const messages = 3
	for i := range messages {
		send(t, romeo, chat("juliet@"+domain, "t"+strconv.Itoa(i), "message "+strconv.Itoa(i)))
	}
	got := notifications(pusher, 5*time.Second)
	ids := map[string]bool{}
	for _, n := range got {
		ids[n.AttrValue("id")] = true
	}
	if len(got) != messages || len(ids) != messages {
		t.Fatalf("%d notifications (%d distinct), want %d", len(got), len(ids), messages)
	}
	log := s.Push2dLog()
	if o, a := outcomes(s, "offline"), outcomes(s, "archived"); o != messages || a != 0 {
		t.Errorf("outcomes: %d offline, %d archived, want %d offline and no archived (one event per stanza):\n%s", o, a, messages, grep(log, "outcome"))
	}
	if d := strings.Count(log, "duplicate: this registration already got a push"); d != 0 {
		t.Errorf("%d duplicates, want none (one event per stanza):\n%s", d, grep(log, "outcome"))
	}
}

// TestPush2dDownEventsReplayed: while push2d is stopped the bridge buffers
// the events of messages for an offline user; when push2d is back it gets
// them all and every push arrives, once. The messages themselves were
// stored as usual.
func TestPush2dDownEventsReplayed(t *testing.T) { eachServer(t, testPush2dDownEventsReplayed) }

func testPush2dDownEventsReplayed(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	pusher, romeo := offlineWithRegistration(t, s, "token-replay")

	if err := s.StopPush2d(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	const messages = 5
	for i := range messages {
		send(t, romeo, chat("juliet@"+domain, "d"+strconv.Itoa(i), "while push2d is away "+strconv.Itoa(i)))
	}
	noNotification(t, pusher, time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.StartPush2d(ctx); err != nil {
		t.Fatal(err)
	}
	var got []*stanza.Element
	for len(got) < messages {
		got = append(got, waitNotification(t, pusher, 20*time.Second))
	}
	got = append(got, notifications(pusher, 2*time.Second)...)
	ids := map[string]bool{}
	for _, n := range got {
		ids[n.AttrValue("id")] = true
	}
	if len(got) != messages || len(ids) != messages {
		t.Fatalf("%d notifications (%d distinct), want %d", len(got), len(ids), messages)
	}
	if !strings.Contains(s.Server.LogTail(400), "replayed") {
		t.Errorf("the bridge did not log a replay")
	}

	back := login(t, s, "juliet", "garden", true)
	for i := range messages {
		expectBody(t, back, "while push2d is away "+strconv.Itoa(i))
	}
}

// TestXEP0357ThroughBridge: the bridge forwards XEP-0357 (urn:xmpp:push:0)
// enable and disable to push2d, which keys the registration by app server
// and node.
func TestXEP0357ThroughBridge(t *testing.T) { eachServer(t, testXEP0357ThroughBridge) }

func testXEP0357ThroughBridge(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{})
	domain := s.Server.Domain()
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", `<enable xmlns="urn:xmpp:push:0" jid="pusher@`+domain+`" node="n1"/>`); resp.AttrValue("type") != "result" {
		t.Fatalf("XEP-0357 enable answered %s", resp)
	}
	if regs, _ := s.Admin("/registrations?account=juliet@" + domain); !strings.Contains(regs, "xep0357:pusher@"+domain) {
		t.Fatalf("registrations: %s", regs)
	}
	if resp := iq(t, juliet, "set", `<disable xmlns="urn:xmpp:push:0" jid="pusher@`+domain+`" node="n1"/>`); resp.AttrValue("type") != "result" {
		t.Fatalf("XEP-0357 disable answered %s", resp)
	}
	if regs, _ := s.Admin("/registrations?account=juliet@" + domain); strings.TrimSpace(regs) != "[]" {
		t.Fatalf("registrations after disable: %s", regs)
	}
}
