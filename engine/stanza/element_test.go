package stanza

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
