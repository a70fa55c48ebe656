package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/hostile"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/xep0357"
)

// issue11Bytes is the size of the enables of issue 11, item 5.
const issue11Bytes = 205 << 10

// TestEnableStoresOnlyWhatIsRead: of an <enable/> the store gets the text
// of <service/> and <client/> and the <match/> elements whole (custom
// children of <match/> and <send/> included); 205 KB of children in other
// namespaces are ignored, as before, and no longer stored, so no reload
// parses them again. The registration reloads and pushes.
func TestEnableStoresOnlyWhatIsRead(t *testing.T) {
	e, store, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	match := `<match profile="urn:xmpp:push2:match:all"><vip xmlns="urn:example:vip" jid="romeo@montague.lit"/><filter jid="room@muc.capulet.lit"><mention/></filter>` +
		`<send xmlns="urn:xmpp:push2:send:notify-only:0"><extra>x</extra></send></match>`
	in := `<enable xmlns="urn:xmpp:push2:0" junk="1">` + hostile.Children("urn:example:junk", issue11Bytes/2) +
		`<service xmlns:j="urn:example:junk" j:a="1">pusher@push.example.com<j:b/></service>` +
		`<client>device-1</client>` + match + hostile.Children("urn:example:junk", issue11Bytes/2) + `</enable>`
	if len(in) < issue11Bytes {
		t.Fatalf("test enable is %d bytes, want at least %d", len(in), issue11Bytes)
	}
	el, err := stanza.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Enable(ctx, account, "phone", el); err != nil {
		t.Fatal(err)
	}
	stored, err := store.Registrations(account)
	if err != nil || len(stored) != 1 {
		t.Fatalf("stored: %d, %v", len(stored), err)
	}
	want := `<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>device-1</client>` + match + `</enable>`
	if stored[0].Enable != want {
		t.Errorf("stored %d bytes:\n%.400s\nwant %d bytes:\n%s", len(stored[0].Enable), stored[0].Enable, len(want), want)
	}

	// A fresh engine on the same store: a reload from the stored form.
	fresh := engine.New(store, e.Registry(), engine.Config{})
	regs, err := fresh.Registrations(ctx, account)
	if err != nil || len(regs) != 1 || len(regs[0].Matches) != 1 {
		t.Fatalf("reloaded: %+v, %v", regs, err)
	}
	m := regs[0].Matches[0]
	if m.Element.Child("urn:example:vip", "vip") == nil || m.Send.ChildText("", "extra") != "x" || len(m.Filters) != 1 {
		t.Errorf("reloaded match lost what profiles read: %s", m.Element)
	}
	res, err := fresh.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(msgBody), Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}})
	if err != nil || len(res.Notifications) != 1 {
		t.Fatalf("evaluate after reload: %v, %+v", err, res)
	}
}

// TestEnableTooLargeRefused: what profiles read cannot be dropped, so a
// registration whose stored form is over Limits.MaxEnableBytes (here 205
// KB of a custom profile's children inside <match/>) is refused with
// policy-violation and a text giving both sizes; nothing is stored and the
// registration it would have replaced stays. At the limit it is accepted.
func TestEnableTooLargeRefused(t *testing.T) {
	e, store, _ := newEngine(t, engine.Config{})
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all")))); err != nil {
		t.Fatal(err)
	}
	before, _ := store.Registrations(account)

	big := stanza.MustParse(enableXML(matchXML("important", hostile.Children("urn:example:profile", issue11Bytes))))
	for _, id := range []string{"phone", "tablet"} {
		_, _, err := e.Enable(ctx, account, id, big)
		var se *stanza.Error
		if !errors.As(err, &se) || se.Condition != stanza.CondPolicyViolation || se.Type != stanza.Modify ||
			!strings.Contains(se.Text, fmt.Sprintf("at most %d bytes", engine.DefaultLimits.MaxEnableBytes)) {
			t.Fatalf("enable %s of %d bytes: %v, want modify policy-violation naming the limit", id, big.Size(), err)
		}
	}
	if after, _ := store.Registrations(account); len(after) != 1 || after[0] != before[0] {
		t.Fatalf("a refused enable changed the store: %+v", after)
	}

	// Exactly at the limit is fine, one byte over is not.
	el := stanza.MustParse(enableXML(matchXML("all", `<vip xmlns="urn:example:vip">`+strings.Repeat("v", 1000)+`</vip>`)))
	size := el.Size() // the stored form of this enable is the enable itself
	for _, tc := range []struct {
		limit int
		ok    bool
	}{{size, true}, {size - 1, false}} {
		lim := engine.DefaultLimits
		lim.MaxEnableBytes = tc.limit
		small, _, _ := newEngine(t, engine.Config{Limits: lim})
		_, _, err := small.Enable(ctx, account, "phone", el)
		if (err == nil) != tc.ok {
			t.Errorf("%d bytes with a limit of %d: %v", size, tc.limit, err)
		}
	}
}

// TestEnableLimitFitsRealRegistrations: the default MaxEnableBytes keeps
// every registration the other limits allow with realistic content: a
// <match/> with all 256 filters on room JIDs, and eight matches.
func TestEnableLimitFitsRealRegistrations(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	var filters strings.Builder
	for i := range engine.DefaultLimits.MaxFilters {
		fmt.Fprintf(&filters, `<filter jid="project-room-%03d@conference.example.org"><mention/><reply/></filter>`, i)
	}
	matches := strings.Repeat(matchXML("important", `<grace>60</grace>`), engine.DefaultLimits.MaxMatches-1)
	el := stanza.MustParse(enableXML(matchXML("all", filters.String()), matches))
	if _, _, err := e.Enable(context.Background(), account, "phone", el); err != nil {
		t.Fatalf("%d-byte registration: %v", el.Size(), err)
	}
	t.Logf("%d bytes stored", el.Size())
}

// TestXEP0357StoresOnlyWhatIsRead: an XEP-0357 <enable/> is stored as its
// jid, node and publish-options forms; other children are not.
func TestXEP0357StoresOnlyWhatIsRead(t *testing.T) {
	store := memstore.New()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(xep0357.Set(xep0357.Options{})); err != nil {
		t.Fatal(err)
	}
	e := engine.New(store, reg, engine.Config{})
	in := strings.Replace(xep0357Enable, "<x ", hostile.Children("urn:example:junk", issue11Bytes)+"<x ", 1)
	if _, _, err := e.Enable(context.Background(), account, "r", stanza.MustParse(in)); err != nil {
		t.Fatal(err)
	}
	stored, _ := store.Registrations(account)
	if len(stored) != 1 || len(stored[0].Enable) > 1024 || strings.Contains(stored[0].Enable, "urn:example:junk") ||
		!strings.Contains(stored[0].Enable, `node="yxs32uqsflafdk3iuqo"`) || !strings.Contains(stored[0].Enable, "eruio234vzxc2kla-91") {
		t.Fatalf("stored: %+v", stored)
	}
	regs, err := e.Registrations(context.Background(), account)
	if err != nil || len(regs) != 1 || regs[0].Client != "yxs32uqsflafdk3iuqo" {
		t.Fatalf("reloaded: %+v, %v", regs, err)
	}
}
