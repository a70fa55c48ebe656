package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/hostile"
	"github.com/push2/push2/internal/stack"
)

// TestOverLimits replays issue 11 item 4 through the server (Prosody or
// ejabberd), the bridge and push2d: stanzas over push2d's parse limits
// (more than 4,096 elements, deeper than 64, ~20,000 attributes on one
// element), which both servers accept (Prosody: under its 256 KiB c2s
// limit; ejabberd: ejabberdtest sets no max_stanza_size, infinity by
// default), used to get no answer at all. Now an <enable/> like that is
// answered at once with modify/policy-violation naming the limit (not
// wait/remote-server-timeout after the bridge's timeout), as an IQ and
// inline in Bind2, and nothing is stored; a message like that to an offline user is reported by its outline
// (docs/bridge-protocol.md "Stanzas over the limits"), gets its push (the
// registration's profile, important, pushes a message with a body), is
// acked, and is not replayed when push2d reconnects.
func TestOverLimits(t *testing.T) { eachServer(t, testOverLimits) }

func testOverLimits(t *testing.T, p server) {
	s := startStack(t, p, stack.Options{ProsodyConfig: `modules_enabled = { "sasl2"; "sasl2_bind2" }` + "\n"})
	domain := s.Server.Domain()
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "romeo", "orchard", true)
	juliet := login(t, s, "juliet", "balcony", true)
	if resp := iq(t, juliet, "set", enableFor("pusher@"+domain, "token-big")); resp.AttrValue("type") != "result" {
		t.Fatalf("enable: %s", resp)
	}

	for name, big := range hostile.OverLimits("urn:example:big") {
		enable := stanza.MustParse(enableFor("pusher@"+domain, "token-"+name))
		enable.Append(big)
		req := stanza.NewElement(stanza.NSClient, "iq", "type", "set")
		req.Append(enable)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		resp, err := juliet.IQ(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("enable over the limits (%s): %v", name, err)
		}
		e := resp.Child("", "error")
		if resp.AttrValue("type") != "error" || e == nil || e.AttrValue("type") != "modify" || e.Child(stanza.NSStanzaError, "policy-violation") == nil ||
			!strings.Contains(e.ChildText(stanza.NSStanzaError, "text"), "over push2d's parse limits") {
			t.Fatalf("enable over the limits (%s): %.600s, want modify/policy-violation naming the limit", name, resp)
		}
	}
	// The same inline in Bind2 (SASL2): the <failed/> in <bound/> names the
	// limit. Nesting, not size: Prosody 0.12 refuses an unauthenticated
	// stanza over 10 KiB itself ("XML stanza is too big").
	deep := strings.Repeat("<a>", stanza.MaxDepth) + strings.Repeat("</a>", stanza.MaxDepth)
	inline := `<enable xmlns="urn:xmpp:push2:0"><service>pusher@` + domain + `</service><client>token-inline</client>` +
		`<match profile="urn:xmpp:push2:match:important"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match>` +
		`<deep xmlns="urn:example:big">` + deep + `</deep></enable>`
	phone := startJS(t, s, "juliet", jsOptions{Resource: "Phone", ClientID: "juliet-inline", InlinePush: inline})
	answer, err := stanza.Parse([]byte(phone.wait("push2-inline", 10*time.Second, nil).XML))
	if err != nil || !answer.Is(stanza.NSPush2, "failed") {
		t.Fatalf("inline enable over the limits: %.600v (%v), want <failed/>", answer, err)
	}
	if e := answer.Child("", "error"); e == nil || e.AttrValue("type") != "modify" || e.Child(stanza.NSStanzaError, "policy-violation") == nil ||
		!strings.Contains(e.ChildText(stanza.NSStanzaError, "text"), "over push2d's parse limits (nested deeper than 64 elements)") {
		t.Fatalf("inline enable over the limits: %.600s, want modify/policy-violation naming the limit", answer)
	}
	phone.command(map[string]string{"cmd": "stop"})
	phone.wait("stopped", 10*time.Second, nil)
	if regs, err := s.Admin("/registrations?account=juliet@" + domain); err != nil || strings.Count(regs, `"id"`) != 1 {
		t.Fatalf("registrations after the refused enables: %s %v, want the one accepted", regs, err)
	}

	juliet.Close()
	time.Sleep(300 * time.Millisecond) // the session's end reaches the bridge
	big := hostile.OverLimits("urn:example:big")
	for name, el := range big {
		m := chat("juliet@"+domain, "big-"+name, "a big one: "+name)
		m.Append(el)
		send(t, romeo, m)
	}
	for range big {
		if n := waitNotification(t, pusher, 20*time.Second); clientOf(n) != "token-big" {
			t.Fatalf("notification for %q: %s", clientOf(n), n)
		}
	}
	noNotification(t, pusher, 2*time.Second)
	log := s.Push2dLog()
	if n := strings.Count(log, "event about a stanza over the parse limits"); n < len(big) {
		t.Errorf("push2d evaluated %d outlines, want at least %d:\n%s", n, len(big), grep(log, "limits"))
	}
	if strings.Contains(log, "unreadable stanza") {
		t.Errorf("the bridge sent push2d a stanza over its limits:\n%s", grep(log, "unreadable"))
	}

	// Every event was acked: a reconnecting push2d gets nothing replayed.
	if err := s.StopPush2d(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.StartPush2d(ctx); err != nil {
		t.Fatal(err)
	}
	send(t, romeo, chat("juliet@"+domain, "after", "after the restart"))
	waitNotification(t, pusher, 20*time.Second)
	noNotification(t, pusher, 2*time.Second)
	if l := s.Server.LogTail(400); strings.Contains(l, "replayed") {
		t.Errorf("the bridge replayed events after push2d reconnected:\n%s", grep(l, "replayed"))
	}
}
