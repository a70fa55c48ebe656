package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// Stanzas of every kind the issue names, as the server would hand them to
// the engine for juliet@capulet.lit (whose nick in the room is "Juliet").
const (
	msgBody       = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="juliet@capulet.lit" type="chat" id="s1"><body>Art thou not Romeo?</body></message>`
	msgArchived   = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="juliet@capulet.lit" type="chat" id="s2"><body>archived</body><stanza-id xmlns="urn:xmpp:sid:0" by="juliet@capulet.lit" id="mam-2"/></message>`
	msgForeignSID = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="juliet@capulet.lit" type="chat" id="s3"><body>x</body><stanza-id xmlns="urn:xmpp:sid:0" by="romeo@montague.lit" id="theirs"/></message>`
	msgOMEMO      = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s4"><encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="1"/><payload>AAAA</payload></encrypted><stanza-id xmlns="urn:xmpp:sid:0" by="juliet@capulet.lit" id="mam-4"/></message>`
	msgOMEMO2     = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s4b"><encrypted xmlns="urn:xmpp:omemo:2"><header sid="1"/><payload>AAAA</payload></encrypted></message>`
	msgOX         = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s5"><openpgp xmlns="urn:xmpp:openpgp:0">BASE64</openpgp></message>`
	msgPGP        = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s6"><x xmlns="jabber:x:encrypted">BASE64</x></message>`
	msgPropose    = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s7"><propose xmlns="urn:xmpp:jingle-message:0" id="call1"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio"/></propose><stanza-id xmlns="urn:xmpp:sid:0" by="juliet@capulet.lit" id="mam-7"/></message>`
	msgRetract    = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s8"><retract xmlns="urn:xmpp:jingle-message:0" id="call1"/></message>`
	msgChatState  = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s9"><composing xmlns="http://jabber.org/protocol/chatstates"/><stanza-id xmlns="urn:xmpp:sid:0" by="juliet@capulet.lit" id="mam-9"/></message>`
	msgReceipt    = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s10"><received xmlns="urn:xmpp:receipts" id="s1"/></message>`
	msgMarker     = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s10b"><displayed xmlns="urn:xmpp:chat-markers:0" id="s1"/></message>`
	msgHeadline   = `<message xmlns="jabber:client" from="news.capulet.lit" type="headline" id="s11"><body>News!</body></message>`
	msgSentCarbon = `<message xmlns="jabber:client" from="juliet@capulet.lit" to="juliet@capulet.lit/balcony" id="s12"><sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="juliet@capulet.lit/chamber" to="romeo@montague.lit" type="chat" id="own1"><body>I said this</body></message></forwarded></sent></message>`
	msgRecvCarbon = `<message xmlns="jabber:client" from="juliet@capulet.lit" to="juliet@capulet.lit/balcony" id="s13"><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="juliet@capulet.lit/chamber" type="chat" id="in1"><body>to another device</body></message></forwarded></received></message>`
	msgCorrection = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="s14"><body>fixed typo</body><replace xmlns="urn:xmpp:message-correct:0" id="s1"/></message>`
	msgReflection = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Juliet" type="groupchat" id="s15"><body>my own words</body></message>`
	msgGroupchat  = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Nurse" type="groupchat" id="s16"><body>Anon, good nurse!</body></message>`
	msgMention    = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Nurse" type="groupchat" id="s17"><body>Where is Juliet?</body></message>`
	msgNoMention  = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Nurse" type="groupchat" id="s18"><body>Where is Juliette's ring? julietX</body></message>`
	msgRefMention = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Nurse" type="groupchat" id="s19"><body>hey you</body><reference xmlns="urn:xmpp:reference:0" type="mention" begin="0" end="3" uri="xmpp:room@muc.capulet.lit/Juliet"/></message>`
	msgReply      = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Nurse" type="groupchat" id="s20"><body>> old&#10;yes</body><reply xmlns="urn:xmpp:reply:0" to="room@muc.capulet.lit/Juliet" id="orig"/></message>`
	msgReplyOther = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Nurse" type="groupchat" id="s21"><body>yes</body><reply xmlns="urn:xmpp:reply:0" to="room@muc.capulet.lit/Romeo" id="orig"/></message>`
	msgError      = `<message xmlns="jabber:client" from="romeo@montague.lit" type="error" id="s22"><body>bounce</body><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></message>`
	msgInvite     = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" id="s23"><x xmlns="jabber:x:conference" jid="room@muc.capulet.lit"/></message>`
	presence      = `<presence xmlns="jabber:client" from="romeo@montague.lit/orchard" type="subscribe"/>`
)

type want struct {
	push     bool
	priority string
	voip     bool
}

func evaluateOne(t *testing.T, e *engine.Engine, raw string, c engine.Context) (*engine.Result, want) {
	t.Helper()
	if c.Account == "" {
		c.Account = account
	}
	if c.Trigger == "" {
		c.Trigger = engine.TriggerOffline
	}
	res, err := e.Evaluate(context.Background(), &engine.Event{Stanza: stanza.MustParse(raw), Context: c})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Notifications) == 0 {
		return res, want{}
	}
	n := res.Notifications[0]
	return res, want{true, n.Priority.String(), n.VoIP}
}

// TestMatchProfiles runs each built-in profile against each stanza kind.
func TestMatchProfiles(t *testing.T) {
	no := want{}
	normal := want{true, "normal", false}
	low := want{true, "low", false}
	call := want{true, "high", true}
	retract := want{true, "high", false}
	table := []struct {
		name, stanza                           string
		all, important, archived, archivedBody want
	}{
		{"body", msgBody, normal, normal, no, no},
		{"archived body", msgArchived, normal, normal, normal, normal},
		{"stanza-id by someone else", msgForeignSID, normal, normal, no, no},
		{"OMEMO", msgOMEMO, normal, normal, normal, no},
		{"OMEMO 2", msgOMEMO2, normal, normal, no, no},
		{"OX", msgOX, normal, normal, no, no},
		{"legacy PGP", msgPGP, normal, normal, no, no},
		{"call propose", msgPropose, call, call, call, no},
		{"call retract", msgRetract, retract, retract, no, no},
		{"chat state alone", msgChatState, low, no, low, no},
		{"receipt", msgReceipt, low, no, no, no},
		{"marker", msgMarker, low, no, no, no},
		{"headline", msgHeadline, low, no, no, no},
		{"carbon of own message", msgSentCarbon, low, no, no, no},
		{"carbon of incoming message", msgRecvCarbon, normal, normal, no, no},
		{"correction", msgCorrection, low, no, no, no},
		{"own MUC reflection", msgReflection, low, no, no, no},
		{"groupchat", msgGroupchat, normal, normal, no, no},
		{"error", msgError, low, no, no, no},
		{"invitation", msgInvite, normal, normal, no, no},
		{"presence", presence, low, no, no, no},
	}
	for _, profile := range []string{"all", "important", "archived", "archived-with-body"} {
		for _, tc := range table {
			t.Run(profile+"/"+tc.name, func(t *testing.T) {
				e, _, _ := newEngine(t, engine.Config{})
				if _, _, err := e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML(profile)))); err != nil {
					t.Fatal(err)
				}
				exp := map[string]want{"all": tc.all, "important": tc.important, "archived": tc.archived, "archived-with-body": tc.archivedBody}[profile]
				res, got := evaluateOne(t, e, tc.stanza, engine.Context{Nick: "Juliet"})
				if got != exp {
					t.Errorf("got %+v, want %+v (%+v)", got, exp, res.Outcomes)
				}
			})
		}
	}
}

// TestArchivedFromContext: the bridge may report the archive id instead of
// the stanza carrying it; an id assigned by someone else is not the user's
// archive.
func TestArchivedFromContext(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("archived-with-body"))))
	if _, got := evaluateOne(t, e, msgBody, engine.Context{Trigger: engine.TriggerArchived, ArchiveID: "a1", ArchiveBy: account}); !got.push {
		t.Error("archive id from the context not honoured")
	}
	if _, got := evaluateOne(t, e, strings.Replace(msgBody, `id="s1"`, `id="s1x"`, 1), engine.Context{ArchiveID: "a2", ArchiveBy: "room@muc.capulet.lit"}); got.push {
		t.Error("an archive id assigned by a room counted as the user's archive")
	}
}

func TestNotificationNotifyOnly(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	res, _ := evaluateOne(t, e, msgBody, engine.Context{})
	if len(res.Notifications) != 1 {
		t.Fatalf("outcomes: %+v", res.Outcomes)
	}
	n := res.Notifications[0]
	got := n.Stanza.String()
	wantPrefix := `<message xmlns="jabber:client" to="pusher@push.example.com" from="capulet.lit" id="` + n.ID + `"><notification xmlns="urn:xmpp:push2:0"><client>https://push.example.com/adlfkjadafdasf</client><priority>normal</priority></notification></message>`
	if got != wantPrefix {
		t.Errorf("notification:\n got %s\nwant %s", got, wantPrefix)
	}
	if n.To != "pusher@push.example.com" {
		t.Errorf("To = %q", n.To)
	}
	// The call notification carries <voip/>.
	res, _ = evaluateOne(t, e, msgPropose, engine.Context{})
	if s := res.Notifications[0].Stanza.String(); !strings.Contains(s, "<priority>high</priority><voip/>") {
		t.Errorf("call notification: %s", s)
	}
}

func TestFilters(t *testing.T) {
	const room = "room@muc.capulet.lit"
	cases := []struct {
		name, filter, stanza string
		push                 bool
	}{
		{"no filter", ``, msgGroupchat, true},
		{"muted room", `<filter jid="` + room + `"/>`, msgGroupchat, false},
		{"muted room, mention still muted", `<filter jid="` + room + `"/>`, msgMention, false},
		{"muted other room", `<filter jid="other@muc.capulet.lit"/>`, msgGroupchat, true},
		{"mention filter, no mention", `<filter jid="` + room + `"><mention/></filter>`, msgGroupchat, false},
		{"mention filter, nick as word", `<filter jid="` + room + `"><mention/></filter>`, msgMention, true},
		{"mention filter, nick inside another word", `<filter jid="` + room + `"><mention/></filter>`, msgNoMention, false},
		{"mention filter, XEP-0372 reference", `<filter jid="` + room + `"><mention/></filter>`, msgRefMention, true},
		{"mention filter, reply is not a mention", `<filter jid="` + room + `"><mention/></filter>`, msgReply, false},
		{"reply filter, reply to me", `<filter jid="` + room + `"><reply/></filter>`, msgReply, true},
		{"reply filter, reply to someone else", `<filter jid="` + room + `"><reply/></filter>`, msgReplyOther, false},
		{"reply filter, mention is not a reply", `<filter jid="` + room + `"><reply/></filter>`, msgMention, false},
		{"both, mention", `<filter jid="` + room + `"><mention/><reply/></filter>`, msgMention, true},
		{"both, reply", `<filter jid="` + room + `"><mention/><reply/></filter>`, msgReply, true},
		{"both, neither", `<filter jid="` + room + `"><mention/><reply/></filter>`, msgGroupchat, false},
		{"muted 1:1 contact (bare JID of full from)", `<filter jid="romeo@montague.lit"/>`, msgBody, false},
		{"filter JID normalized", `<filter jid="ROOM@MUC.Capulet.lit"/>`, msgGroupchat, false},
		{"filter with full JID matches the room", `<filter jid="room@muc.capulet.lit/whatever"/>`, msgGroupchat, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := newEngine(t, engine.Config{})
			if _, _, err := e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all", tc.filter)))); err != nil {
				t.Fatal(err)
			}
			res, got := evaluateOne(t, e, tc.stanza, engine.Context{Trigger: engine.TriggerGroupchat, Nick: "Juliet"})
			if got.push != tc.push {
				t.Errorf("push = %v, want %v (%+v)", got.push, tc.push, res.Outcomes)
			}
		})
	}
}

// TestMentionFallbacks: without a room nick the account's localpart is the
// name; a reference to the account counts in one-to-one chats; a reply to
// the user's bare JID counts outside rooms.
func TestMentionFallbacks(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all", `<filter jid="romeo@montague.lit"><mention/><reply/></filter>`))))
	for _, tc := range []struct {
		stanza string
		push   bool
	}{
		{`<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat" id="f1"><body>juliet, come!</body></message>`, true},
		{`<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat" id="f2"><body>come!</body></message>`, false},
		{`<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat" id="f3"><body>you</body><reference xmlns="urn:xmpp:reference:0" type="mention" uri="xmpp:juliet@capulet.lit"/></message>`, true},
		{`<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat" id="f4"><body>yes</body><reply xmlns="urn:xmpp:reply:0" to="juliet@capulet.lit/balcony" id="x"/></message>`, true},
		{`<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat" id="f5"><body>yes</body><reply xmlns="urn:xmpp:reply:0" to="romeo@montague.lit/o" id="x"/></message>`, false},
	} {
		if _, got := evaluateOne(t, e, tc.stanza, engine.Context{}); got.push != tc.push {
			t.Errorf("%s: push = %v, want %v", tc.stanza, got.push, tc.push)
		}
	}
}

func TestGrace(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all", `<grace>60</grace>`))))
	e.Enable(ctx, account, "tablet", stanza.MustParse(strings.Replace(enableXML(matchXML("all")), "adlfkjadafdasf", "tablet", 1)))
	id := 0
	msg := func(body string) string {
		id++
		return strings.Replace(strings.Replace(msgBody, `id="s1"`, `id="g`+string(rune('a'+id))+`"`, 1), "Art thou not Romeo?", body, 1)
	}
	pushedTo := func(stanza string) map[string]bool {
		res, _ := evaluateOne(t, e, stanza, engine.Context{})
		m := map[string]bool{}
		for _, n := range res.Notifications {
			m[n.Reg.ID] = true
		}
		return m
	}

	// No activity yet: both pushed.
	if got := pushedTo(msg("one")); !got["phone"] || !got["tablet"] {
		t.Fatalf("no activity: %v", got)
	}
	// Activity on the laptop 10 s ago: the phone (grace 60) pauses; the
	// tablet (no grace) still gets pushes.
	e.NoteActivity(account, "laptop", now.Add(-10*time.Second))
	if got := pushedTo(msg("two")); got["phone"] || !got["tablet"] {
		t.Errorf("inside the window: %v", got)
	}
	// Calls are exempt from grace.
	if got := pushedTo(msgPropose); !got["phone"] {
		t.Errorf("call during grace: %v", got)
	}
	// The phone's own activity does not pause the phone.
	e.NoteActivity(account, "phone", now.Add(-70*time.Second))
	*now = now.Add(61 * time.Second)
	e.NoteActivity(account, "phone", *now)
	if got := pushedTo(msg("three")); !got["phone"] {
		t.Errorf("after the window / own activity only: %v", got)
	}
	// Exactly at the edge of the window: activity 60 s ago still counts.
	e.NoteActivity(account, "laptop", now.Add(-60*time.Second))
	if got := pushedTo(msg("four")); got["phone"] {
		t.Errorf("at the window's edge: %v", got)
	}
	// Activity of another account does not count.
	*now = now.Add(time.Hour)
	e.NoteActivity("romeo@montague.lit", "laptop", *now)
	if got := pushedTo(msg("five")); !got["phone"] {
		t.Errorf("other account's activity paused the push: %v", got)
	}
}

// TestDedupe: a registration gets at most one push per stanza, whatever
// triggers report it and whether or not they know the archive id.
func TestDedupe(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	pushes := 0
	for _, c := range []engine.Context{
		{Trigger: engine.TriggerHibernated},
		{Trigger: engine.TriggerArchived, ArchiveID: "mam-1", ArchiveBy: account},
		{Trigger: engine.TriggerOffline},
		{Trigger: engine.TriggerAckDelayed},
	} {
		res, _ := evaluateOne(t, e, msgBody, c)
		pushes += len(res.Notifications)
	}
	if pushes != 1 {
		t.Errorf("one stanza through four triggers: %d pushes", pushes)
	}
	// Without an id attribute the content identifies the stanza; the
	// server's stanza-id and delay do not change it.
	noID := `<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat"><body>no id</body></message>`
	withSID := `<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat"><body>no id</body><stanza-id xmlns="urn:xmpp:sid:0" by="juliet@capulet.lit" id="mam-9"/><delay xmlns="urn:xmpp:delay" stamp="2026-11-25T12:00:00Z"/></message>`
	r1, _ := evaluateOne(t, e, noID, engine.Context{})
	r2, _ := evaluateOne(t, e, withSID, engine.Context{})
	if len(r1.Notifications)+len(r2.Notifications) != 1 {
		t.Errorf("id-less stanza: %d + %d pushes", len(r1.Notifications), len(r2.Notifications))
	}
	// A sender that reuses an id (a client counting from 1 again after a
	// restart) does not lose the push of its new message.
	reused := strings.Replace(msgBody, "Art thou not Romeo?", "a new message, an old id", 1)
	if r, _ := evaluateOne(t, e, reused, engine.Context{}); len(r.Notifications) != 1 {
		t.Error("a new message with a reused id was deduplicated")
	}
	// A different message is pushed.
	r3, _ := evaluateOne(t, e, strings.Replace(msgBody, `id="s1"`, `id="other"`, 1), engine.Context{})
	if len(r3.Notifications) != 1 {
		t.Error("a new stanza was deduplicated")
	}
	// Another registration of the same account is independent.
	e.Enable(ctx, account, "tablet", stanza.MustParse(enableXML(matchXML("all"))))
	r4, _ := evaluateOne(t, e, msgBody, engine.Context{})
	if len(r4.Notifications) != 1 || r4.Notifications[0].Reg.ID != "tablet" {
		t.Errorf("new registration: %+v", r4.Outcomes)
	}
}

// TestEventRestrictsRegistrations: the bridge names the registrations whose
// session is not live; the others get nothing.
func TestEventRestrictsRegistrations(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	e.Enable(ctx, account, "laptop", stanza.MustParse(enableXML(matchXML("all"))))
	res, err := e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(msgBody), Context: engine.Context{Account: account, Trigger: engine.TriggerHibernated}, Registrations: []string{"phone"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Notifications) != 1 || res.Notifications[0].Reg.ID != "phone" {
		t.Errorf("got %+v", res.Outcomes)
	}
	res, _ = e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(msgArchived), Context: engine.Context{Account: account}, Registrations: []string{}})
	if len(res.Notifications) != 0 {
		t.Errorf("empty registration list pushed: %+v", res.Outcomes)
	}
}

// TestFirstMatchingMatchWins: with several <match/>, the first that pushes
// (after its filters and grace) decides; one notification per stanza.
func TestFirstMatchingMatchWins(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	el := enableXML(
		matchXML("archived-with-body", `<filter jid="romeo@montague.lit"/>`),
		matchXML("important"),
	)
	e.Enable(ctx, account, "phone", stanza.MustParse(el))
	res, _ := evaluateOne(t, e, msgArchived, engine.Context{})
	if len(res.Notifications) != 1 || res.Outcomes[0].Profile != "urn:xmpp:push2:match:important" {
		t.Errorf("got %+v", res.Outcomes)
	}
}

func TestEvaluateBadInput(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	if _, err := e.Evaluate(context.Background(), &engine.Event{Stanza: stanza.MustParse(msgBody), Context: engine.Context{Account: "@@"}}); err == nil {
		t.Error("invalid account accepted")
	}
	if _, err := e.Evaluate(context.Background(), &engine.Event{Context: engine.Context{Account: account}}); err == nil {
		t.Error("nil stanza accepted")
	}
}
