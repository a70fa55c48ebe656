package stanza

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/push2/push2/internal/cpubench"
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

// attrs returns n attributes a0="" a1=""… as they appear in a start tag.
func attrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, ` a%d=""`, i)
	}
	return b.String()
}

// wide returns a stanza of n elements <c …/> under the root, each with
// perElement attributes.
func wide(n, perElement int) string {
	return "<r>" + strings.Repeat("<c"+attrs(perElement)+"/>", n) + "</r>"
}

func nested(depth int, open, close string) string {
	return strings.Repeat(open, depth) + strings.Repeat(close, depth)
}

// TestParseLimits: each parse limit lets through a stanza exactly at it and
// refuses one just over it with ErrTooLarge, through Parse and through
// ReadElement (the token-stream path push2d reads the server with).
func TestParseLimits(t *testing.T) {
	long := strings.Repeat("n", MaxNameBytes)
	for _, tc := range []struct{ name, at, over string }{
		{"depth", nested(MaxDepth, "<a>", "</a>"), nested(MaxDepth+1, "<a>", "</a>")},
		{"elements", "<a>" + strings.Repeat("<b/>", MaxElements-1) + "</a>", "<a>" + strings.Repeat("<b/>", MaxElements) + "</a>"},
		{"bytes", "<a>" + strings.Repeat("x", MaxStanzaBytes-7) + "</a>", "<a>" + strings.Repeat("x", MaxStanzaBytes-6) + "</a>"},
		{"attributes on an element", "<a" + attrs(MaxElementAttrs) + "/>", "<a" + attrs(MaxElementAttrs+1) + "/>"},
		{"attributes in a stanza", wide(MaxAttrs/MaxElementAttrs, MaxElementAttrs), wide(MaxAttrs/MaxElementAttrs, MaxElementAttrs)[:len(wide(MaxAttrs/MaxElementAttrs, MaxElementAttrs))-4] + "<c a=''/></r>"},
		{"element name", "<" + long + "/>", "<" + long + "n/>"},
		{"attribute name", "<a " + long + "=''/>", "<a " + long + "n=''/>"},
		{"prefix", `<a xmlns:` + long + `="u" ` + long + `:b=""/>`, `<a xmlns:` + long + `n="u" ` + long + `n:b=""/>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.at)); err != nil {
				t.Errorf("Parse at the limit: %v", err)
			}
			if _, err := Parse([]byte(tc.over)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("Parse over the limit: %v, want ErrTooLarge", err)
			}
			if tc.name == "prefix" || tc.name == "bytes" {
				return // a stream resolves prefixes; it counts bytes differently (below)
			}
			if _, err := readString(tc.at); err != nil {
				t.Errorf("ReadElement at the limit: %v", err)
			}
			if _, err := readString(tc.over); !errors.Is(err, ErrTooLarge) {
				t.Errorf("ReadElement over the limit: %v, want ErrTooLarge", err)
			}
		})
	}
	// A stream counts attribute values as well as text.
	value := strings.Repeat("v", MaxStanzaBytes/2)
	if _, err := readString(`<a x="` + value + `" y="` + value + `"/>`); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ReadElement of %d bytes of attribute values: %v, want ErrTooLarge", 2*len(value), err)
	}
}

func readString(s string) (*Element, error) {
	d := xml.NewDecoder(strings.NewReader(s))
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	return ReadElement(tok.(xml.StartElement), d)
}

// TestParseDuplicateAttributes: a name twice is refused whether the
// element has few attributes (compared pairwise) or many (a set), by
// prefix or by the namespace two prefixes resolve to.
func TestParseDuplicateAttributes(t *testing.T) {
	for _, in := range []string{
		`<a x="1" x="2"/>`,
		`<a` + attrs(100) + ` a57="again"/>`,
		`<a xmlns:p="u" xmlns:q="u" p:x="1" q:x="2"/>`,
		`<a xmlns:p="u" xmlns:q="u"` + attrs(20) + ` p:x="1" q:x="2"/>`,
		`<a xmlns="u" xmlns="v"/>`,
		`<a xmlns:p="u" xmlns:p="v"/>`,
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), "duplicate attribute") {
			t.Errorf("Parse(%.60q) = %v, want a duplicate attribute error", in, err)
		}
	}
	for _, in := range []string{`<a` + attrs(100) + `/>`, `<a xmlns:p="u" xmlns:q="v" p:x="1" q:x="2" x="3"/>`} {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("Parse(%.60q): %v", in, err)
		}
	}
	if _, err := readString(`<a` + attrs(100) + ` a57="again"/>`); err == nil {
		t.Error("ReadElement accepted a duplicate attribute")
	}
}

// TestParseTextPieces: text interrupted by comments and CDATA sections is
// one Text, in order, through both paths.
func TestParseTextPieces(t *testing.T) {
	in := `<a>one<!-- c --> two<![CDATA[ <three> ]]>&amp;four<b/>five</a>`
	want := "one two <three> &fourfive"
	el, err := Parse([]byte(in))
	if err != nil || el.Text != want {
		t.Errorf("Parse: %q, %v; want %q", el.Text, err, want)
	}
	el, err = readString(in)
	if err != nil || el.Text != want {
		t.Errorf("ReadElement: %q, %v; want %q", el.Text, err, want)
	}
}

// BenchmarkParseAttributes shows that parsing cost is linear in the number
// of attributes: cpu-ns/attr stays flat from 1,024 to the MaxAttrs limit
// (256 per element), and within one element up to MaxElementAttrs.
//
//	go test -run '^$' -bench ParseAttributes ./engine/stanza/
func BenchmarkParseAttributes(b *testing.B) {
	for _, tc := range []struct {
		name string
		in   string
		n    int
	}{
		{"one-element-32", "<a" + attrs(32) + "/>", 32},
		{"one-element-256", "<a" + attrs(256) + "/>", 256},
		{"stanza-1024", wide(1024/MaxElementAttrs, MaxElementAttrs), 1024},
		{"stanza-4096", wide(4096/MaxElementAttrs, MaxElementAttrs), 4096},
		{"stanza-16384", wide(MaxAttrs/MaxElementAttrs, MaxElementAttrs), MaxAttrs},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := []byte(tc.in)
			b.SetBytes(int64(len(in)))
			stop := cpubench.Start(b)
			for b.Loop() {
				if _, err := Parse(in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(stop()/float64(tc.n), "cpu-ns/attr")
		})
	}
}

// BenchmarkParseIssue11 is the stanza of issue 11, item 5: one element with
// 205 KB of attributes, which took seconds to check for duplicates; it is
// now refused at MaxElementAttrs after the decoder read the tag.
func BenchmarkParseIssue11(b *testing.B) {
	var s strings.Builder
	s.WriteString(`<x xmlns="urn:example:junk"`)
	for i := 0; s.Len() < 205<<10; i++ {
		fmt.Fprintf(&s, ` a%d=""`, i)
	}
	s.WriteString(`/>`)
	in := []byte(s.String())
	stop := cpubench.Start(b)
	for b.Loop() {
		if _, err := Parse(in); !errors.Is(err, ErrTooLarge) {
			b.Fatal(err)
		}
	}
	stop()
}

// TestSizeCountsEscapes: Size and SizeIn count what Marshal and MarshalIn
// write, for text and attribute values with every escaped character
// (counted in one pass, without the escapers).
func TestSizeCountsEscapes(t *testing.T) {
	tricky := "a&b<c>d\"e'f\rg\nh\ti é🙂"
	el := NewElement(NSClient, "message", "to", tricky, "id", "x")
	el.Attr = append(el.Attr, xml.Attr{Name: xml.Name{Space: NSXML, Local: "lang"}, Value: tricky},
		xml.Attr{Name: xml.Name{Space: "urn:other", Local: "n"}, Value: tricky})
	el.Append(NewElement(NSClient, "body").WithText(tricky), NewElement("urn:x", "empty"),
		NewElement("urn:x", "wrap", "v", tricky).Append(NewElement("urn:x", "in").WithText(tricky)))
	if got, want := el.Size(), len(el.Marshal()); got != want {
		t.Errorf("Size = %d, len(Marshal) = %d", got, want)
	}
	// Prefixes of strings shorter and longer than a block, with escapes
	// in the first block, in a later one only, and none.
	long := strings.Repeat("abcdefghij", 13) + "<&>" + strings.Repeat("é", 50) + "\r"
	for _, s := range []string{tricky, long, strings.Repeat("x", 200), strings.Repeat("&", 130), ""} {
		p := NewTextPrefix(s)
		for i := range len(s) + 1 {
			want := 0 // an empty text: <b/>
			if i > 0 {
				want = len(NewElement("", "b").WithText(s[:i]).MarshalIn("")) - len("<b></b>")
			}
			if got := p.Size(i); got != want || TextSize(s[:i]) != want {
				t.Errorf("%.20q prefix %d: TextPrefix gives %d, TextSize %d, written %d", s, i, got, TextSize(s[:i]), want)
			}
		}
	}
	if got := el.MarshalSized(el.Size()); string(got) != string(el.Marshal()) || cap(got) != len(got) {
		t.Errorf("MarshalSized wrote %d bytes (cap %d), Marshal %d", len(got), cap(got), len(el.Marshal()))
	}
	for _, ns := range []string{NSClient, "urn:x", ""} {
		for _, e := range append([]*Element{el}, el.Children...) {
			if got, want := e.SizeIn(ns), len(e.MarshalIn(ns)); got != want {
				t.Errorf("SizeIn(%q) of <%s> = %d, len(MarshalIn) = %d", ns, e.Name.Local, got, want)
			}
		}
	}
}

// TestClone: the copy serializes as the original, shares no memory with it
// (editing one leaves the other as it was), and appending a child or an
// attribute to one copied element leaves its siblings' lists alone (Clone
// allocates them in shared blocks).
func TestClone(t *testing.T) {
	in := `<message xmlns="jabber:client" from="a@b/c" type="chat"><body>hi</body><x xmlns="jabber:x:data" type="form"><field var="a"><value>1</value></field><field var="b"/></x><active xmlns="http://jabber.org/protocol/chatstates"/></message>`
	orig := MustParse(in)
	c := orig.Clone()
	if got := c.String(); got != in {
		t.Fatalf("clone = %s\nwant %s", got, in)
	}
	c.Attr[0].Value = "z@y"
	c.Children[0].Text = "changed"
	c.Children[1].Children[0].Attr = append(c.Children[1].Children[0].Attr, xml.Attr{Name: xml.Name{Local: "label"}, Value: "L"})
	c.Children[1].Children[0].Append(NewElement("jabber:x:data", "desc"))
	c.Children[0].Append(NewElement("jabber:client", "extra"))
	if got := orig.String(); got != in {
		t.Fatalf("editing the clone changed the original: %s", got)
	}
	want := `<message xmlns="jabber:client" from="z@y" type="chat"><body>changed<extra/></body><x xmlns="jabber:x:data" type="form"><field var="a" label="L"><value>1</value><desc/></field><field var="b"/></x><active xmlns="http://jabber.org/protocol/chatstates"/></message>`
	if got := c.String(); got != want {
		t.Fatalf("edited clone = %s\nwant %s", got, want)
	}
	if (*Element)(nil).Clone() != nil {
		t.Error("Clone of nil is not nil")
	}
}

// TestEscapeTables: each escape table and the table of what it adds agree
// byte for byte (Size counts with one, Marshal writes with the other), and
// every escaped byte reads back as itself through encoding/xml.
func TestEscapeTables(t *testing.T) {
	for _, tab := range []struct {
		name    string
		escapes *[256]string
		extra   *[256]uint8
	}{{"text", &textEscapes, &textEscapeExtra}, {"attr", &attrEscapes, &attrEscapeExtra}} {
		for c := range 256 {
			esc, extra := tab.escapes[c], int(tab.extra[c])
			if (esc == "") != (extra == 0) || (esc != "" && len(esc)-1 != extra) {
				t.Errorf("%s: byte %#x escaped as %q, counted as %d more bytes", tab.name, c, esc, extra)
			}
			if esc == "" {
				continue
			}
			var got string
			if err := xml.Unmarshal([]byte("<a>"+esc+"</a>"), &got); err != nil || got != string(rune(c)) {
				t.Errorf("%s: %q reads back as %q (%v), want %q", tab.name, esc, got, err, string(rune(c)))
			}
		}
	}
}
