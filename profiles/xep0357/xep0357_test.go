package xep0357

import (
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// TestID: the stored id form must not change (registrations on disk are
// keyed by it), and only XEP-0357 ids are recognized.
func TestID(t *testing.T) {
	if got := ID("push-5.client.example", "node"); got != "xep0357:push-5.client.example<node" || !IsID(got) {
		t.Errorf("ID = %q", got)
	}
	if IsID("phone") || IsID("") {
		t.Error("a Push 2.0 id taken for an XEP-0357 one")
	}
}

// TestParseDisable: by app server, optionally by node, never a Push 2.0
// registration with the same service.
func TestParseDisable(t *testing.T) {
	p := New(Options{})
	regs := []*engine.Registration{
		{ID: ID("a.example", "n1"), Service: "a.example", Client: "n1"},
		{ID: ID("a.example", "n2"), Service: "a.example", Client: "n2"},
		{ID: ID("b.example", "n1"), Service: "b.example", Client: "n1"},
		{ID: "phone", Service: "a.example", Client: "n1"},
	}
	for _, tc := range []struct {
		xml  string
		want []bool
	}{
		{`<disable xmlns="urn:xmpp:push:0" jid="a.example"/>`, []bool{true, true, false, false}},
		{`<disable xmlns="urn:xmpp:push:0" jid="A.example" node="n2"/>`, []bool{false, true, false, false}},
	} {
		sel, err := p.ParseDisable(stanza.MustParse(tc.xml))
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range regs {
			if sel(r) != tc.want[i] {
				t.Errorf("%s selects %s: %t", tc.xml, r.ID, sel(r))
			}
		}
	}
	for _, bad := range []string{`<disable xmlns="urn:xmpp:push:0"/>`, `<disable xmlns="urn:xmpp:push:0" jid="@@"/>`, `<enable xmlns="urn:xmpp:push:0" jid="a.example"/>`} {
		if _, err := p.ParseDisable(stanza.MustParse(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
