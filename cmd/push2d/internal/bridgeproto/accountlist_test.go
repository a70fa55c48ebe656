package bridgeproto

import (
	"context"
	"fmt"
	"testing"

	"github.com/push2/push2/engine/stanza"
)

func withAccountList(c *Config) { c.AccountList = true }

// accountsIn returns the <accounts/> payloads among out, in order.
func accountsIn(t *testing.T, out []*stanza.Element) (lists []*AccountList, changes []RegisteredChange) {
	t.Helper()
	for _, m := range out {
		for _, c := range m.Children {
			if c.Is(NS, KindAccounts) {
				l, ch, err := ParseAccounts(c)
				if err != nil {
					t.Fatal(err)
				}
				if l != nil {
					lists = append(lists, l)
				}
				changes = append(changes, ch...)
			}
		}
	}
	return lists, changes
}

// TestRegisteredAccountChanges: an enable tells the bridge the account has
// registrations before the enable's result (so the next message is
// reported), the last disable that it has none; a second registration
// changes nothing the bridge needs but is said again (idempotent).
func TestRegisteredAccountChanges(t *testing.T) {
	h := newHarnessWith(t, withAccountList)
	out := h.do(iqFrom(domain, "set", (&Enable{Account: account, Registration: "r1", Request: stanza.MustParse(enableXML)}).Element()))
	if len(out) != 2 || out[1].Name.Local != "iq" || out[1].AttrValue("type") != "result" {
		t.Fatalf("enable sent %v", out)
	}
	if _, ch := accountsIn(t, out[:1]); len(ch) != 1 || ch[0] != (RegisteredChange{Account: account, Has: true}) || out[0].AttrValue("to") != domain {
		t.Fatalf("before the result: %v", out[0])
	}
	h.enable2(t, "r2")
	out = h.do(iqFrom(domain, "set", (&Disable{Account: account, Registration: "r1"}).Element()))
	if _, ch := accountsIn(t, out); len(ch) != 1 || !ch[0].Has {
		t.Fatalf("disable of one of two: %v", out)
	}
	out = h.do(iqFrom(domain, "set", (&Disable{Account: account, Registration: "r2"}).Element()))
	if _, ch := accountsIn(t, out); len(ch) != 1 || ch[0] != (RegisteredChange{Account: account, Has: false}) {
		t.Fatalf("disable of the last: %v", out)
	}
	// A suspended account has no registration that can get a push.
	h.enable2(t, "r3")
	out = h.do(iqFrom(domain, "set", stanza.MustParse(`<account xmlns="`+NS+`" account="`+account+`" state="disabled"/>`)))
	if _, ch := accountsIn(t, out); len(ch) != 1 || ch[0].Has {
		t.Fatalf("suspension: %v", out)
	}
	// Without AccountList nothing of this is sent.
	h = newHarness(t)
	if out := h.do(iqFrom(domain, "set", (&Enable{Account: account, Registration: "r1", Request: stanza.MustParse(enableXML)}).Element())); len(out) != 1 {
		t.Fatalf("without AccountList: %v", out)
	}
}

func (h *harness) enable2(t *testing.T, reg string) {
	t.Helper()
	out := h.do(iqFrom(domain, "set", (&Enable{Account: account, Registration: reg, Request: stanza.MustParse(enableXML)}).Element()))
	if len(out) != 2 || out[1].AttrValue("type") != "result" {
		t.Fatalf("enable %s: %v", reg, out)
	}
}

// TestAnnounceAccounts: the whole list goes to each domain in chunks of at
// most AccountChunk under one list id, the last one marked; a domain with
// no such account gets one empty, last chunk; suspended accounts are left
// out.
func TestAnnounceAccounts(t *testing.T) {
	h := newHarnessWith(t, withAccountList)
	ctx := context.Background()
	const n = 2*AccountChunk + 7
	for i := range n {
		if _, _, err := h.eng.Enable(ctx, fmt.Sprintf("u%d@%s", i, domain), "r", stanza.MustParse(enableXML)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.eng.SuspendAccount(ctx, "u0@"+domain, true); err != nil {
		t.Fatal(err)
	}
	h.wire.take()
	h.svc.AnnounceAccounts(ctx)
	out := h.wire.take()
	lists, _ := accountsIn(t, out)
	got := map[string]map[string]bool{}
	var sizes []int
	for i, l := range lists {
		to := out[i].AttrValue("to")
		if got[to] == nil {
			got[to] = map[string]bool{}
		}
		for _, a := range l.Accounts {
			got[to][a] = true
		}
		sizes = append(sizes, len(l.Accounts))
		if len(l.Accounts) > AccountChunk {
			t.Errorf("chunk of %d", len(l.Accounts))
		}
		if l.List != lists[0].List && to == domain {
			t.Errorf("one list, two ids: %s %s", l.List, lists[0].List)
		}
		if l.Last != (i == len(lists)-1 || out[i+1].AttrValue("to") != to) {
			t.Errorf("chunk %d: last=%v", i, l.Last)
		}
	}
	if len(got[domain]) != n-1 || got[domain]["u0@"+domain] || !got[domain]["u1@"+domain] {
		t.Errorf("%s: %d accounts (want %d, without the suspended u0)", domain, len(got[domain]), n-1)
	}
	if _, ok := got["example.net"]; !ok || len(got["example.net"]) != 0 {
		t.Errorf("example.net: %v", got["example.net"])
	}
	t.Logf("chunks: %v", sizes)
}
