package host

import (
	"testing"

	"github.com/push2/push2/engine/stanza"
)

func TestFindPath(t *testing.T) {
	st := stanza.MustParse(`<message xmlns="jabber:client"><a xmlns="urn:a"/><a xmlns="urn:a"><b xmlns="http://example.com/b/c" k="v"/></a><body>hi</body></message>`)
	cases := []struct {
		path string
		want string // local name and namespace of the result, "" for none
		err  bool
	}{
		{"", "message jabber:client", false},
		{"body", "body jabber:client", false},
		{"{jabber:client}body", "body jabber:client", false},
		{"{urn:other}body", "", false},
		{"{urn:a}a/{http://example.com/b/c}b", "b http://example.com/b/c", false}, // backtracks to the second <a/>
		{"*/b", "b http://example.com/b/c", false},
		{"{urn:a}*", "a urn:a", false},
		{"a/", "", true},
		{"{urn:a", "", true},
		{"a//b", "", true},
		{"{x}", "", true},
	}
	for _, c := range cases {
		got, err := FindPath(st, c.path)
		if (err != nil) != c.err {
			t.Errorf("%q: err %v", c.path, err)
			continue
		}
		s := ""
		if got != nil {
			s = got.Name.Local + " " + got.Name.Space
		}
		if s != c.want {
			t.Errorf("%q: got %q, want %q", c.path, s, c.want)
		}
	}
}

func TestDecodeAnyBase64(t *testing.T) {
	for _, in := range []string{"aGk/", "aGk_", "aGk/\n", " aGk_ ", "aGk/=="[:4]} {
		b, err := decodeAnyBase64(in)
		if err != nil || string(b) != "hi?" {
			t.Errorf("%q: %q %v", in, b, err)
		}
	}
	if _, err := decodeAnyBase64("a*b"); err == nil {
		t.Error("accepted a*b")
	}
}

func TestCleanText(t *testing.T) {
	if got := cleanText([]byte("a\x00b\nc\xffd"), 100); got != "a b c\uFFFDd" {
		t.Errorf("got %q", got)
	}
	if got := cleanText([]byte("héllo"), 2); got != "h" {
		t.Errorf("cut inside a rune: %q", got)
	}
}

func FuzzParseImports(f *testing.F) {
	f.Add([]byte("\x00asm\x01\x00\x00\x00"))
	f.Add(hostile("imports-UNKNOWN_ENV.wasm"))
	f.Add(hostile("hostile-v1.wasm"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseImports(b) // must not panic or hang
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"", "a", "{ns}a/b", "{http://x/y}*", "a//", "{"} {
		f.Add(s)
	}
	st := stanza.MustParse(`<a xmlns="urn:a"><b/><c xmlns="urn:c"><d/></c></a>`)
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = FindPath(st, s)
	})
}

func FuzzParseNotificationChildren(f *testing.F) {
	for _, s := range []string{"", "<a xmlns='urn:a'/>", "</notification><x/>", "<<<", "<client xmlns='urn:xmpp:push2:0'/>", "text"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		children, err := parseNotificationChildren([]byte(s), 4096)
		if err != nil {
			return
		}
		size := 0
		for _, c := range children {
			if c.Name.Space == stanza.NSPush2 {
				t.Fatalf("accepted a child in %s: %q", stanza.NSPush2, s)
			}
			size += len(c.MarshalIn(stanza.NSPush2))
		}
		if size > 4096 {
			t.Fatalf("accepted %d bytes over budget", size)
		}
	})
}
