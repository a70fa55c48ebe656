package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSimulate(t *testing.T) {
	enable := "../../examples/simulate/enable.xml"
	message := "../../examples/simulate/message.xml"
	muc := writeFile(t, "muc.xml", `<message xmlns="jabber:client" from="somemuc@conference.example.com/Nurse" type="groupchat" id="g1"><body>where is Juliet?</body><stanza-id xmlns="urn:xmpp:sid:0" by="user@localhost" id="mam-9"/></message>`)
	cases := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring; "" means empty output
		stderrHas  string
		stdoutNone bool
	}{
		{"push", []string{"--enable", enable, "--stanza", message}, 0, `<notification xmlns="urn:xmpp:push2:0"><client>https://push.example.com/adlfkjadafdasf</client><priority>normal</priority></notification>`, "", false},
		{"explain", []string{"--enable", enable, "--stanza", message, "--explain"}, 0, "<message", "simulated: push", false},
		{"grace suppresses", []string{"--enable", enable, "--stanza", message, "--activity", "laptop=10", "--explain"}, 0, "", "grace", true},
		{"grace window over", []string{"--enable", enable, "--stanza", message, "--activity", "laptop=200"}, 0, "<notification", "", false},
		{"filter needs a mention: none", []string{"--enable", enable, "--stanza", muc, "--trigger", "groupchat", "--nick", "Romeo", "--explain"}, 0, "", "pushes only mentions", true},
		{"filter needs a mention: nick", []string{"--enable", enable, "--stanza", muc, "--trigger", "groupchat", "--nick", "Juliet"}, 0, "<notification", "", false},
		{"not archived", []string{"--enable", enable, "--stanza", writeFile(t, "m.xml", `<message xmlns="jabber:client" from="a@b/c" id="x"><body>x</body></message>`), "--explain"}, 0, "", "not in the user's archive", true},
		{"archive id flag", []string{"--enable", enable, "--stanza", writeFile(t, "m.xml", `<message xmlns="jabber:client" from="a@b/c" id="x"><body>x</body></message>`), "--archive-id", "a1"}, 0, "<notification", "", false},
		{"two registrations", []string{"--enable", enable, "--enable", enable, "--stanza", message, "--explain"}, 0, "<message", "simulated-2: push", false},
		{"missing flags", []string{"--enable", enable}, 2, "", "required", true},
		{"bad trigger", []string{"--enable", enable, "--stanza", message, "--trigger", "sometimes"}, 2, "", "unknown --trigger", true},
		{"bad enable", []string{"--enable", writeFile(t, "e.xml", `<enable xmlns="urn:xmpp:push2:0"><client>x</client></enable>`), "--stanza", message}, 1, "", "bad-request: <service/> is required", true},
		{"unknown profile", []string{"--enable", writeFile(t, "e.xml", `<enable xmlns="urn:xmpp:push2:0"><service>p.example</service><client>x</client><match profile="urn:example:x"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`), "--stanza", message}, 1, "", "feature-not-implemented", true},
		{"malformed stanza", []string{"--enable", enable, "--stanza", writeFile(t, "s.xml", `<message>`)}, 1, "", "--stanza", true},
		{"missing file", []string{"--enable", "/nonexistent/e.xml", "--stanza", message}, 1, "", "no such file", true},
		{"bad activity", []string{"--enable", enable, "--stanza", message, "--activity", "x"}, 2, "", "SESSION=SECONDS_AGO", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"simulate"}, tc.args...), strings.NewReader(""), &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if tc.stdoutNone && out.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", out.String())
			}
			if tc.stdout != "" && !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout = %q, want it to contain %q", out.String(), tc.stdout)
			}
			if tc.stderrHas != "" && !strings.Contains(errb.String(), tc.stderrHas) {
				t.Errorf("stderr = %q, want it to contain %q", errb.String(), tc.stderrHas)
			}
		})
	}
}

// TestSimulateXEP0357: simulate serves XEP-0357 enables with the profile
// set push2d builds (profiles.BuiltinWith): the §6 publish, private by
// default, the body with --xep0357-with-body, nothing for a chat state, and
// a Push 2.0 registration of the same account beside it.
func TestSimulateXEP0357(t *testing.T) {
	enable := "../../examples/simulate/xep0357-enable.xml"
	message := "../../examples/simulate/message.xml"
	var out, errb bytes.Buffer
	if code := run([]string{"simulate", "--enable", enable, "--stanza", message, "--explain"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`<iq type="set" to="push-5.client.example" from="user@localhost"`, `<publish node="yxs32uqsflafdk3iuqo">`,
		`<field var="FORM_TYPE"><value>urn:xmpp:push:summary</value></field>`, `<value>New Message!</value>`, `<publish-options>`, `<value>eruio234vzxc2kla-91</value>`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("publish lacks %s:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Art thou") || !strings.Contains(errb.String(), "xep0357:push-5.client.example<yxs32uqsflafdk3iuqo: push") {
		t.Errorf("private by default / explain:\n%s\n%s", out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"simulate", "--enable", enable, "--stanza", message, "--xep0357-with-body", "--xep0357-with-sender"}, nil, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), `<value>Art thou not Romeo, and a Montague?</value>`) || !strings.Contains(out.String(), `<field var="last-message-sender"><value>romeo@montague.lit/orchard</value></field>`) {
		t.Errorf("with body and sender: exit %d\n%s", code, out.String())
	}
	out.Reset()
	chatState := writeFile(t, "cs.xml", `<message xmlns="jabber:client" from="romeo@montague.lit/orchard" type="chat" id="c1"><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`)
	if code := run([]string{"simulate", "--enable", enable, "--stanza", chatState}, nil, &out, &errb); code != 0 || out.Len() != 0 {
		t.Errorf("chat state: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"simulate", "--enable", enable, "--enable", "../../examples/simulate/enable.xml", "--stanza", message}, nil, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "<iq ") || !strings.Contains(out.String(), `<notification xmlns="urn:xmpp:push2:0">`) {
		t.Errorf("both kinds: exit %d\n%s", code, out.String())
	}
	errb.Reset()
	bad := writeFile(t, "bad.xml", `<enable xmlns="urn:xmpp:push:0" node="n"/>`)
	if code := run([]string{"simulate", "--enable", bad, "--stanza", message}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "bad-request: <enable/> needs the app server's 'jid'") {
		t.Errorf("bad XEP-0357 enable: exit %d %s", code, errb.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "simulate") {
		t.Errorf("no args: %d %q", code, errb.String())
	}
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != 2 {
		t.Errorf("unknown command: %d", code)
	}
}
