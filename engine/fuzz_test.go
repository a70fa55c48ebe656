package engine

import (
	"context"
	"testing"

	"github.com/push2/push2/engine/stanza"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(`<message xmlns="jabber:client"><body>hi</body></message>`))
	f.Add([]byte(`<enable xmlns="urn:xmpp:push2:0"><service>a</service></enable>`))
	f.Add([]byte(`<a xmlns:p="urn:p" p:x="1" xml:lang="en"><p:b/></a>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		el, err := stanza.Parse(b)
		if err != nil {
			return
		}
		// Whatever parses must serialize to something that parses to the
		// same serialization.
		out := el.Marshal()
		again, err := stanza.Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if string(again.Marshal()) != string(out) {
			t.Fatalf("unstable serialization: %q vs %q", out, again.Marshal())
		}
		Inspect(el, &Context{Account: "a@b", Nick: "n"})
	})
}

func FuzzParseEnable(f *testing.F) {
	f.Add([]byte(`<enable xmlns="urn:xmpp:push2:0"><service>p@q</service><client>c</client><match profile="urn:x"><grace>5</grace><filter jid="r@m"><mention/></filter><send xmlns="urn:s"/></match></enable>`))
	reg := NewRegistry()
	f.Fuzz(func(t *testing.T, b []byte) {
		el, err := stanza.Parse(b)
		if err != nil {
			return
		}
		_, err = ParseEnable(context.Background(), reg, DefaultLimits, "a@b", "r", el)
		if err != nil {
			if _, ok := err.(*stanza.Error); !ok {
				t.Fatalf("non-stanza error %T: %v", err, err)
			}
		}
	})
}
