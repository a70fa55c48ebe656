package profiles

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/push2/push2/engine/stanza"
)

// kitchenSink has one child of every class the minimizer knows, in an
// order unrelated to the drop order.
const kitchenSink = `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="juliet@capulet.lit" type="chat" id="m1" xml:lang="en" extra="x">` +
	`<encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="1"><key rid="2">KEYKEYKEYKEY</key><iv>IVIV</iv></header><payload>PAYLOAD</payload></encrypted>` +
	`<html xmlns="http://jabber.org/protocol/xhtml-im"><body xmlns="http://www.w3.org/1999/xhtml"><p>Art thou not <b>Romeo</b>?</p></body></html>` +
	`<body xml:lang="en">Art thou not Romeo, and a Montague? Neither, fair maid, if either thee dislike.</body>` +
	`<body xml:lang="de">Bist du nicht Romeo, und ein Montague?</body>` +
	`<x xmlns="jabber:x:oob"><url>https://upload.montague.lit/rose.jpg</url></x>` +
	`<active xmlns="http://jabber.org/protocol/chatstates"/>` +
	`<frobnicate xmlns="urn:example:unknown"><deep>stuff</deep></frobnicate>` +
	`<reference xmlns="urn:xmpp:reference:0" type="mention" begin="0" end="3" uri="xmpp:juliet@capulet.lit"/>` +
	`<request xmlns="urn:xmpp:receipts"/>` +
	`<thread>thread-1</thread>` +
	`<stanza-id xmlns="urn:xmpp:sid:0" by="juliet@capulet.lit" id="mam-1"/>` +
	`<stanza-id xmlns="urn:xmpp:sid:0" by="room@muc.capulet.lit" id="room-1"/>` +
	`<origin-id xmlns="urn:xmpp:sid:0" id="o1"/>` +
	`<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reply:0"><body start="0" end="3"/></fallback>` +
	`<propose xmlns="urn:xmpp:jingle-message:0" id="call"/>` +
	`<delay xmlns="urn:xmpp:delay" stamp="2024-01-01T00:00:00Z"/>` +
	`<unknown2 xmlns="urn:example:other"/>` +
	`</message>`

// present lists the children of a stanza as "local@namespace-tail".
func present(st *stanza.Element) []string {
	var out []string
	for _, c := range st.Children {
		ns := c.Name.Space
		if i := strings.LastIndexAny(ns, ":/"); i >= 0 {
			ns = ns[i+1:]
		}
		out = append(out, c.Name.Local+"@"+ns)
	}
	return out
}

// TestMinimizeOrder lowers the size limit step by step and checks that each
// stage removes its class of children, and only after the previous stages.
func TestMinimizeOrder(t *testing.T) {
	full := stanza.MustParse(kitchenSink)
	isMAM := func(e *stanza.Element) bool {
		return e.Is(stanza.NSStanzaID, "stanza-id") && e.AttrValue("by") == "juliet@capulet.lit"
	}
	type want struct {
		stages []string
		gone   []string // children (local@ns-tail) that must be gone
		kept   []string // and that must still be there
	}
	// Each limit is the size after the named stage, found by running the
	// stages up to it with no limit at all; see sizeAfter.
	cases := []struct {
		after string
		want  want
	}{
		{stageUnknown, want{[]string{"unknown"}, []string{"frobnicate@unknown", "unknown2@other"}, []string{"active@chatstates", "html@xhtml-im"}}},
		{stageSignals, want{[]string{"unknown", "signals"}, []string{"active@chatstates", "request@receipts", "origin-id@0"}, []string{"html@xhtml-im"}}},
		{stageFormatting, want{[]string{"unknown", "signals", "formatting"}, []string{"html@xhtml-im"}, []string{"reference@0", "x@oob"}}},
		{stageReferences, want{[]string{"unknown", "signals", "formatting", "references"}, []string{"reference@0", "fallback@0"}, []string{"x@oob"}}},
		{stageMedia, want{[]string{"unknown", "signals", "formatting", "references", "media"}, []string{"x@oob"}, []string{"thread@client", "delay@delay"}}},
		{stageAttributes, want{[]string{"unknown", "signals", "formatting", "references", "media", "attributes"}, nil, []string{"thread@client", "delay@delay"}}},
		{stageContext, want{[]string{"unknown", "signals", "formatting", "references", "media", "attributes", "context"}, []string{"thread@client", "delay@delay"}, []string{"encrypted@eu.siacs.conversations.axolotl", "propose@0", "body@client"}}},
	}
	for _, tc := range cases {
		t.Run(tc.after, func(t *testing.T) {
			limit := sizeAfter(t, full, isMAM, tc.after)
			st := full.Clone()
			stages, err := minimizeChecked(t, st, isMAM, func(n int) bool { return n <= limit })
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(stages, tc.want.stages) {
				t.Errorf("stages %v, want %v", stages, tc.want.stages)
			}
			got := present(st)
			for _, g := range tc.want.gone {
				if slices.Contains(got, g) {
					t.Errorf("%s still present: %v", g, got)
				}
			}
			for _, k := range append(tc.want.kept, "body@client", "stanza-id@0") {
				if !slices.Contains(got, k) {
					t.Errorf("%s removed too early: %v", k, got)
				}
			}
			if slices.Index(minimizeOrder, tc.after) >= slices.Index(minimizeOrder, stageAttributes) {
				if _, ok := st.LookupAttr("extra"); ok {
					t.Error("non-essential attribute kept after the attributes stage")
				}
				if b := st.Child(stanza.NSClient, "body"); len(b.Attr) != 0 {
					t.Errorf("xml:lang kept after the attributes stage: %s", b)
				}
			}
			assertEssentials(t, st)
		})
	}

	t.Run("body then payloads", func(t *testing.T) {
		limit := sizeAfter(t, full, isMAM, stageContext)
		// 20 bytes less than after the context stage: the body is cut,
		// the encrypted payload and the call stay.
		st := full.Clone()
		stages, err := minimizeChecked(t, st, isMAM, func(n int) bool { return n <= limit-20 })
		if err != nil || stages[len(stages)-1] != stageBody {
			t.Fatalf("stages %v, err %v", stages, err)
		}
		if b := st.ChildText(stanza.NSClient, "body"); !strings.HasSuffix(b, Ellipsis) {
			t.Errorf("body %q not truncated", b)
		}
		if st.Child("", "encrypted") == nil {
			t.Error("encrypted payload dropped before the body was truncated")
		}
		// Too small for the payloads: they go, and the body comes back
		// whole if it then fits.
		st = full.Clone()
		payloadFree := sizeAfter(t, full, isMAM, stagePayloads)
		stages, err = minimizeChecked(t, st, isMAM, func(n int) bool { return n <= payloadFree })
		if err != nil || stages[len(stages)-1] != stagePayloads {
			t.Fatalf("stages %v, err %v", stages, err)
		}
		if b := st.ChildText(stanza.NSClient, "body"); strings.HasSuffix(b, Ellipsis) {
			t.Errorf("body %q truncated although it fits once the payloads are gone", b)
		}
		if got := present(st); !slices.Equal(got, []string{"body@client", "stanza-id@0"}) {
			t.Errorf("minimal stanza has %v", got)
		}
		assertEssentials(t, st)
	})

	t.Run("impossible", func(t *testing.T) {
		st := full.Clone()
		stages, err := minimizeChecked(t, st, isMAM, func(n int) bool { return n <= 100 })
		if err != errCannotMinimize {
			t.Fatalf("err %v, want ErrCannotMinimize (stages %v)", err, stages)
		}
		assertEssentials(t, st)
	})
}

// sizeAfter returns the size of full once every stage up to and including
// stage has been applied: Minimize with a size test that passes only after
// that stage ran.
func sizeAfter(t *testing.T, full *stanza.Element, keep func(*stanza.Element) bool, stage string) int {
	t.Helper()
	st := full.Clone()
	n := slices.Index(minimizeOrder, stage) + 1
	calls := 0
	// fits is called once up front and once after each stage; the body
	// stage is skipped here (its test fails), so count only the others.
	_, _ = minimizeChecked(t, st, keep, func(int) bool {
		calls++
		return calls > n && !strings.HasSuffix(st.ChildText(stanza.NSClient, "body"), Ellipsis)
	})
	return st.Size()
}

func assertEssentials(t *testing.T, st *stanza.Element) {
	t.Helper()
	for _, a := range []string{"from", "to", "type", "id"} {
		if _, ok := st.LookupAttr(a); !ok {
			t.Errorf("attribute %s removed", a)
		}
	}
	sid := st.Child(stanza.NSStanzaID, "stanza-id")
	if sid == nil || sid.AttrValue("id") != "mam-1" || sid.AttrValue("by") != "juliet@capulet.lit" {
		t.Errorf("MAM stanza-id lost: %s", st)
	}
	if st.Child(stanza.NSClient, "body") == nil {
		t.Error("body removed")
	}
}

func TestTruncateText(t *testing.T) {
	cases := []struct {
		name, in string
		n        int
		want     string
	}{
		{"fits", "hello", 5, "hello"},
		{"ascii", "hello world", 7, "hello w…"},
		{"trailing space", "hello world", 6, "hello…"},
		{"zero", "hello", 0, "…"},
		{"negative", "hello", -3, "…"},
		{"two-byte", "héllo", 2, "h…"},
		{"cjk", "漢字かな", 4, "漢…"},
		{"cjk exact", "漢字かな", 6, "漢字…"},
		{"emoji", "a😀b", 3, "a…"},
		{"emoji zwj family", "x👩\u200d👩\u200d👧y", 12, "x…"},
		{"skin tone", "👍🏽ok", 5, "…"},
		{"variation selector", "a❤\ufe0fb", 4, "a…"},
		{"combining accent", "cafe\u0301s", 5, "caf…"},
		{"arabic", "مرحبا بالعالم", 9, "مرحب…"},
		{"arabic harakat", "مَرْحَبًا", 5, "مَ…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := truncateText(tc.in, tc.n)
			if got != tc.want {
				t.Errorf("TruncateText(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("invalid UTF-8: %q", got)
			}
			if got != tc.in && len(got)-len(Ellipsis) > max(tc.n, 0) {
				t.Errorf("kept %d bytes, more than %d", len(got)-len(Ellipsis), tc.n)
			}
		})
	}
}

// FuzzMinimize: for any stanza and limit, Minimize either fits the limit
// or says it cannot, never removes the essentials, and leaves valid UTF-8.
func FuzzMinimize(f *testing.F) {
	f.Add(kitchenSink, 300)
	f.Add(kitchenSink, 900)
	f.Add(`<message xmlns="jabber:client" from="a@b/c" id="1"><body>héllo wörld 👩‍👩‍👧</body><stanza-id xmlns="urn:xmpp:sid:0" by="juliet@capulet.lit" id="mam-1"/></message>`, 120)
	f.Add(`<message xmlns="jabber:client"><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" id="x"><body>inner body</body><x xmlns="urn:a"/></message></forwarded></received></message>`, 150)
	f.Fuzz(func(t *testing.T, doc string, limit int) {
		st, err := stanza.Parse([]byte(doc))
		if err != nil {
			return
		}
		keep := func(e *stanza.Element) bool {
			return e.Is(stanza.NSStanzaID, "stanza-id") && e.AttrValue("id") == "mam-1"
		}
		hadMAM := st.Child(stanza.NSStanzaID, "stanza-id") != nil && keep(st.Child(stanza.NSStanzaID, "stanza-id"))
		attrs := map[string]string{}
		for _, a := range []string{"from", "to", "type", "id"} {
			if v, ok := st.LookupAttr(a); ok {
				attrs[a] = v
			}
		}
		_, err = minimizeChecked(t, st, keep, func(n int) bool { return n <= limit })
		if err == nil && st.Size() > limit {
			t.Fatalf("fits reported, but %d > %d", st.Size(), limit)
		}
		if err != nil && err != errCannotMinimize {
			t.Fatalf("error %v", err)
		}
		for a, v := range attrs {
			if got, ok := st.LookupAttr(a); !ok || got != v {
				t.Fatalf("attribute %s changed to %q", a, got)
			}
		}
		if hadMAM && st.Child(stanza.NSStanzaID, "stanza-id") == nil {
			t.Fatal("kept stanza-id removed")
		}
		if !utf8.ValidString(st.String()) {
			t.Fatal("invalid UTF-8 after minimizing")
		}
		if _, err := stanza.Parse(st.Marshal()); err != nil {
			t.Fatalf("minimized stanza does not parse: %v", err)
		}
	})
}

// minimizeChecked is minimize, failing t unless the size it counted is
// the size of the tree it left (it counts its edits instead of measuring).
func minimizeChecked(t testing.TB, st *stanza.Element, keep func(*stanza.Element) bool, fits func(int) bool) ([]string, error) {
	t.Helper()
	stages, size, err := minimizeSize(st, keep, fits)
	if got := st.Size(); got != size {
		t.Fatalf("minimize counted a size of %d, the tree takes %d: %s", size, got, st)
	}
	return stages, err
}
