package prosodytest

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/component"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

type message struct {
	stanza.Message
	Body string `xml:"body"`
}

// serveMessages serves sess in the background and forwards every received
// message with a body to the returned channel. The second channel receives
// Serve's result when the session ends.
func serveMessages(sess *xmpp.Session) (<-chan message, <-chan error) {
	msgs := make(chan message, 16)
	done := make(chan error, 1)
	go func() {
		done <- sess.Serve(xmpp.HandlerFunc(func(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
			if start.Name.Local != "message" {
				return nil
			}
			// t yields the children and the end element, not the start.
			var m message
			d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), t))
			if err := d.Decode(&m); err != nil {
				return err
			}
			if m.Body != "" {
				select {
				case msgs <- m:
				default:
				}
			}
			return nil
		}))
	}()
	return msgs, done
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func sendChat(ctx context.Context, sess *xmpp.Session, to jid.JID, body string) error {
	return sess.Encode(ctx, message{
		Message: stanza.Message{To: to, Type: stanza.ChatMessage},
		Body:    body,
	})
}

func waitMessage(t *testing.T, msgs <-chan message, body string) message {
	t.Helper()
	select {
	case m := <-msgs:
		if m.Body != body {
			t.Fatalf("got message %q from %s, want %q", m.Body, m.From, body)
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("no message %q received within 10s", body)
	}
	panic("unreachable")
}

// eachVersion runs test once per supported Prosody version, as subtests
// named after it ("prosody13", "prosody012").
func eachVersion(t *testing.T, test func(t *testing.T, v Version)) {
	for _, v := range Versions {
		t.Run(v.Name(), func(t *testing.T) { test(t, v) })
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// login creates localpart with password and logs it in, announcing
// presence so messages to the bare JID are delivered to this session.
func login(t *testing.T, ctx context.Context, s *Server, localpart string) (*xmpp.Session, <-chan message) {
	t.Helper()
	sess, err := s.DialClient(ctx, s.JID(localpart), localpart+"-pw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	msgs, _ := serveMessages(sess)
	if err := sess.Send(ctx, stanza.Presence{}.Wrap(nil)); err != nil {
		t.Fatal(err)
	}
	return sess, msgs
}

func TestClientsExchangeMessages(t *testing.T) { eachVersion(t, testClientsExchangeMessages) }

func testClientsExchangeMessages(t *testing.T, v Version) {
	t.Parallel()
	ctx := testContext(t)
	begin := time.Now()
	s := MustStart(t, Options{Version: v})
	t.Logf("prosody %s started in %v (c2s %s, component %s, dir %s)", s.RunningVersion(), time.Since(begin), s.C2SAddr(), s.ComponentAddr(), s.Dir())
	if s.Version() != v || !strings.HasPrefix(s.RunningVersion(), string(v)+".") {
		t.Fatalf("asked for %s, running %s (%q)", v, s.Version(), s.RunningVersion())
	}

	for _, u := range []string{"alice", "bob"} {
		if err := s.CreateUser(u, u+"-pw"); err != nil {
			t.Fatal(err)
		}
	}
	alice, aliceMsgs := login(t, ctx, s, "alice")
	bob, bobMsgs := login(t, ctx, s, "bob")
	if got := bob.LocalAddr().Bare().String(); got != "bob@localhost" {
		t.Fatalf("bob bound as %s", got)
	}
	if bob.LocalAddr().Resourcepart() == "" {
		t.Fatalf("no resource bound: %s", bob.LocalAddr())
	}

	if err := sendChat(ctx, alice, s.JID("bob"), "hello bob"); err != nil {
		t.Fatal(err)
	}
	m := waitMessage(t, bobMsgs, "hello bob")
	if m.From.Bare().String() != "alice@localhost" {
		t.Fatalf("message from %s, want alice@localhost/...", m.From)
	}
	if err := sendChat(ctx, bob, m.From, "hi alice"); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, aliceMsgs, "hi alice")

	if _, err := s.DialClient(ctx, s.JID("alice"), "wrong"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
}

func TestComponent(t *testing.T) { eachVersion(t, testComponent) }

func testComponent(t *testing.T, v Version) {
	t.Parallel()
	ctx := testContext(t)
	s := MustStart(t, Options{Version: v, ComponentDomain: "push.localhost", ComponentSecret: "s3cr3t"})
	if s.ComponentDomain() != "push.localhost" || s.ComponentSecret() != "s3cr3t" {
		t.Fatalf("component %q secret %q", s.ComponentDomain(), s.ComponentSecret())
	}

	comp, err := s.DialComponent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer comp.Close()
	compMsgs, _ := serveMessages(comp)

	// A client's message to the component's domain is routed to it.
	if err := s.CreateUser("carol", "carol-pw"); err != nil {
		t.Fatal(err)
	}
	carol, carolMsgs := login(t, ctx, s, "carol")
	if err := sendChat(ctx, carol, jid.MustParse("push.localhost"), "to component"); err != nil {
		t.Fatal(err)
	}
	m := waitMessage(t, compMsgs, "to component")
	if m.From.Bare().String() != "carol@localhost" {
		t.Fatalf("component got message from %s", m.From)
	}
	// ... and the component can send to the client.
	if err := comp.Encode(ctx, message{
		Message: stanza.Message{From: jid.MustParse("push.localhost"), To: m.From, Type: stanza.ChatMessage},
		Body:    "from component",
	}); err != nil {
		t.Fatal(err)
	}
	waitMessage(t, carolMsgs, "from component")

	// The handshake really checks the secret.
	conn, err := net.Dial("tcp", s.ComponentAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if sess, err := component.NewSession(ctx, jid.MustParse("push.localhost"), []byte("wrong"), conn); err == nil {
		sess.Close()
		t.Fatal("component handshake with a wrong secret succeeded")
	}
}

func TestRestart(t *testing.T) { eachVersion(t, testRestart) }

func testRestart(t *testing.T, v Version) {
	t.Parallel()
	ctx := testContext(t)
	s := MustStart(t, Options{Version: v})
	if err := s.CreateUser("dave", "dave-pw"); err != nil {
		t.Fatal(err)
	}
	c2s, compAddr, pid := s.C2SAddr(), s.ComponentAddr(), s.PID()

	sess, err := s.DialClient(ctx, s.JID("dave"), "dave-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	_, served := serveMessages(sess)
	comp, err := s.DialComponent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer comp.Close()
	_, compServed := serveMessages(comp)

	begin := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %v", time.Since(begin))
	if s.Running() {
		t.Fatal("running after Stop")
	}
	for name, ch := range map[string]<-chan error{"client": served, "component": compServed} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s session still served 10s after Stop", name)
		}
	}
	if _, err := s.DialClient(ctx, s.JID("dave"), "dave-pw"); err == nil {
		t.Fatal("login succeeded while stopped")
	}
	// Stop is idempotent; users can be created while stopped.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser("erin", "erin-pw"); err != nil {
		t.Fatal(err)
	}

	begin = time.Now()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %v", time.Since(begin))
	if s.C2SAddr() != c2s || s.ComponentAddr() != compAddr {
		t.Fatalf("addresses changed: %s %s -> %s %s", c2s, compAddr, s.C2SAddr(), s.ComponentAddr())
	}
	if s.PID() == pid || s.PID() == 0 {
		t.Fatalf("pid %d after restart (was %d)", s.PID(), pid)
	}
	for _, u := range []string{"dave", "erin"} {
		sess, err := s.DialClient(ctx, s.JID(u), u+"-pw")
		if err != nil {
			t.Fatalf("%s after restart: %v", u, err)
		}
		sess.Close()
	}
	comp2, err := s.DialComponent(ctx)
	if err != nil {
		t.Fatalf("component after restart: %v", err)
	}
	comp2.Close()

	// A crash (SIGKILL) and a restart from there work too.
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	sess2, err := s.DialClient(ctx, s.JID("dave"), "dave-pw")
	if err != nil {
		t.Fatalf("after kill and restart: %v", err)
	}
	sess2.Close()
}

func TestPluginPathsAndExtraConfig(t *testing.T) { eachVersion(t, testPluginPathsAndExtraConfig) }

func testPluginPathsAndExtraConfig(t *testing.T, v Version) {
	t.Parallel()
	ctx := testContext(t)
	mods := t.TempDir()
	lua := `module:add_feature("urn:push2:test:probe");
module:log("info", "probe loaded on %s, greeting=%s", module.host, module:get_option_string("probe_greeting", "none"));
`
	if err := os.WriteFile(filepath.Join(mods, "mod_probe.lua"), []byte(lua), 0o644); err != nil {
		t.Fatal(err)
	}
	var logCopy syncBuffer
	s := MustStart(t, Options{
		Version:          v,
		Log:              &logCopy,
		Domain:           "example.test",
		ExtraModules:     []string{"probe", "cloud_notify"}, // cloud_notify: prosody-modules
		PluginPaths:      []string{mods},
		ExtraConfig:      `probe_greeting = "hi \"there\""`,
		ExtraVHostConfig: `	disco_items = { { "push.example.test", "push" } }`,
		ComponentDomain:  "push.example.test",
	})
	tail := s.LogTail(-1)
	if !strings.Contains(tail, `probe loaded on example.test, greeting=hi "there"`) {
		t.Fatalf("probe module not loaded with ExtraConfig; log:\n%s", s.LogTail(60))
	}
	if !strings.Contains(tail, "cloud_notify") {
		t.Fatalf("cloud_notify not loaded; log:\n%s", s.LogTail(60))
	}
	if !strings.Contains(logCopy.String(), "probe loaded on example.test") {
		t.Fatalf("Options.Log did not get the log; got:\n%s", logCopy.String())
	}
	if err := s.CreateUser("frank", "frank-pw"); err != nil {
		t.Fatal(err)
	}
	sess, err := s.DialClient(ctx, s.JID("frank"), "frank-pw")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if got := sess.LocalAddr(); got.Bare().String() != "frank@example.test" || got.Resourcepart() == "" {
		t.Fatalf("bound %s", got)
	}
}

func TestStartErrors(t *testing.T) { eachVersion(t, testStartErrors) }

func testStartErrors(t *testing.T, v Version) {
	t.Parallel()
	ctx := testContext(t)

	t.Run("missing module", func(t *testing.T) {
		_, err := Start(ctx, Options{Version: v, ExtraModules: []string{"no_such_module_xyz"}})
		if err == nil || !strings.Contains(err.Error(), "no_such_module_xyz") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad lua config", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Start(ctx, Options{Version: v, Dir: dir, ExtraConfig: "this is not lua"})
		if err == nil || !strings.Contains(err.Error(), "exited during start-up") ||
			!strings.Contains(err.Error(), "config") {
			t.Fatalf("err = %v", err)
		}
		t.Logf("error as reported:\n%v", err)
	})
	t.Run("module fails to load", func(t *testing.T) {
		mods := t.TempDir()
		if err := os.WriteFile(filepath.Join(mods, "mod_broken.lua"), []byte(`error("broken on purpose")`), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Start(ctx, Options{Version: v, ExtraModules: []string{"broken"}, PluginPaths: []string{mods}})
		if err == nil || !strings.Contains(err.Error(), "broken on purpose") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestNotInstalled(t *testing.T) { eachVersion(t, testNotInstalled) }

func testNotInstalled(t *testing.T, v Version) {
	// Not parallel: changes PATH and where Prosody 13 is looked for.
	t.Setenv("PATH", t.TempDir())
	t.Setenv("PUSH2_PROSODY13_ROOT", t.TempDir())
	_, err := Start(t.Context(), Options{Version: v})
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "scripts/install-deps.sh") {
		t.Fatalf("err = %v", err)
	}
}

func TestLuaString(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:         `"plain"`,
		`a"b\c`:         `"a\"b\\c"`,
		"line\nnext":    `"line\nnext"`,
		"nul\x001":      `"nul\0001"`,
		"ünïcode":       `"ünïcode"`,
		"/tmp/x y/data": `"/tmp/x y/data"`,
	} {
		if got := luaString(in); got != want {
			t.Errorf("luaString(%q) = %s, want %s", in, got, want)
		}
	}
}
