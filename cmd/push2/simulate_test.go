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

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "simulate") {
		t.Errorf("no args: %d %q", code, errb.String())
	}
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != 2 {
		t.Errorf("unknown command: %d", code)
	}
}
