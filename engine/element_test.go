package engine

import (
	"strings"
	"testing"
)

func TestParseRoundTrip(t *testing.T) {
	in := `<message xmlns="jabber:client" from="a@b/c" type="chat" xml:lang="en"><body>x &lt; y &amp; "z"</body><stanza-id xmlns="urn:xmpp:sid:0" by="a@b" id="1"/><x xmlns="jabber:x:conference" jid="r@m"/></message>`
	el, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out := el.String()
	if out != strings.Replace(in, `"z"`, `"z"`, 1) {
		t.Errorf("round trip:\n got %s\nwant %s", out, in)
	}
	if el.Size() != len(out) {
		t.Errorf("Size = %d, len = %d", el.Size(), len(out))
	}
	again, err := Parse([]byte(out))
	if err != nil || again.String() != out {
		t.Errorf("second round trip: %v", err)
	}
	if el.MarshalIn(NSClient)[1] != 'm' || strings.Contains(string(el.MarshalIn(NSClient)), `message xmlns`) {
		t.Errorf("MarshalIn kept the inherited xmlns: %s", el.MarshalIn(NSClient))
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		``,
		`text`,
		`<a>`,
		`<a></b>`,
		`<a/><b/>`,
		`<a/>trailing`,
		`<!DOCTYPE x><a/>`,
		`<a><?pi x?></a>`,
		`<p:a/>`,
		strings.Repeat("<a>", MaxDepth+1) + strings.Repeat("</a>", MaxDepth+1),
		"<a>" + strings.Repeat("<b/>", MaxElements) + "</a>",
		"<a>" + strings.Repeat("x", MaxStanzaBytes) + "</a>",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%.40q) accepted", in)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`<message xmlns="jabber:client"><body>hi</body></message>`))
	f.Add([]byte(`<enable xmlns="urn:xmpp:push2:0"><service>a</service></enable>`))
	f.Add([]byte(`<a xmlns:p="urn:p" p:x="1" xml:lang="en"><p:b/></a>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		el, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parses must serialize to something that parses to the
		// same serialization.
		out := el.Marshal()
		again, err := Parse(out)
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
		el, err := Parse(b)
		if err != nil {
			return
		}
		_, err = ParseEnable(reg, DefaultLimits, "a@b", "r", el)
		if err != nil {
			if _, ok := err.(*StanzaError); !ok {
				t.Fatalf("non-stanza error %T: %v", err, err)
			}
		}
	})
}
