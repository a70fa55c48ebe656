package bridgeproto

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/push2/push2/engine/stanza"
)

// TestPushBytes: the push written raw is the one the token path writes.
func TestPushBytes(t *testing.T) {
	n := stanza.MustParse(`<message xmlns="jabber:client" to="pusher@p.example" id="n1"><notification xmlns="urn:xmpp:push2:0"><x xmlns="urn:example" xml:lang="en" a="&quot;&amp;&#xA;">t &lt; &gt; &#xD;é</x></notification></message>`)
	b := pushBytes(component, "example.org", "juliet@example.org", `r"&<'`, string(n.Marshal()))
	got, err := readStreamStanza(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	want := Message(component, "example.org", (&Push{Account: "juliet@example.org", Registration: `r"&<'`, Notification: n}).Element())
	want.SetAttr("id", got.AttrValue("id"))
	if got.String() != want.String() {
		t.Errorf("raw\n%s\nparsed back as\n%s\nwant\n%s", b, got, want)
	}
}

// simpleSeeds are stanzas simpleElement takes, and some it must not.
var simpleSeeds = []string{
	`<message xmlns="jabber:client" to="a@b" id="1"><notification xmlns="urn:xmpp:push2:0"/></message>`,
	`<a xml:lang="en" b="&quot;&amp;&lt;&gt;&#xD;&#xA;&#x9;"><c>text &amp; more</c><d/></a>`,
	`<a><b></a></b>`, `<a b="1" b="2"/>`, `<a/><a/>`, `<a>&#x0;</a>`, `<a>]]></a>`, `<a><![CDATA[x]]></a>`,
	`<a x:b="1"/>`, "<a>\x00</a>", "<a>\xff</a>", `<a b='1'/>`, `<a`, `<a>`, `</a>`, `<a></a >`, `<1/>`,
}

// TestSimpleElement: what simpleElement takes, a strict XML parser takes
// as one element, with what the engine stores among it.
func TestSimpleElement(t *testing.T) {
	for i, s := range simpleSeeds {
		if got, want := simpleElement(s), i < 2; got != want {
			t.Errorf("simpleElement(%q) = %v, want %v", s, got, want)
		}
	}
	checkSimple(t, simpleSeeds[0])
}

// FuzzSimpleElement: nothing simpleElement takes breaks a strict parser.
func FuzzSimpleElement(f *testing.F) {
	for _, s := range simpleSeeds {
		f.Add(s)
	}
	f.Fuzz(checkSimple)
}

func checkSimple(t *testing.T, s string) {
	if !simpleElement(s) {
		return
	}
	if _, err := stanza.Parse([]byte(`<w xmlns="urn:w">` + s + `</w>`)); err != nil {
		t.Fatalf("simpleElement took %q, stanza.Parse: %v", s, err)
	}
	d := xml.NewDecoder(strings.NewReader(s))
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("simpleElement took %q, encoding/xml: %v", s, err)
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 {
				t.Fatalf("simpleElement took %q: text outside the element", s)
			}
		default:
			t.Fatalf("simpleElement took %q: %T", s, tok)
		}
	}
	if roots != 1 || depth != 0 {
		t.Fatalf("simpleElement took %q: %d elements at the top", s, roots)
	}
}

// TestFromDomain: an address equal to a configured domain is taken
// without a parse, one that normalizes to it after one, and nothing else.
func TestFromDomain(t *testing.T) {
	h := newHarness(t)
	for from, want := range map[string]bool{domain: true, "EXAMPLE.org": true, "example.net": true, "evil.example": false, account: false, domain + "/r": false, "": false} {
		if got := h.svc.fromDomain(stanza.NewElement(stanza.NSClient, "message", "from", from)); got != want {
			t.Errorf("fromDomain(%q) = %v, want %v", from, got, want)
		}
	}
}
