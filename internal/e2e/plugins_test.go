package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/stack"
)

func accountFeatures(t *testing.T, c *stack.Client, account string) []string {
	t.Helper()
	disco := stanza.NewElement(stanza.NSClient, "iq", "type", "get", "to", account)
	disco.Append(stanza.NewElement(stanza.NSDiscoInfo, "query"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.IQ(ctx, disco)
	if err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, f := range resp.Child(stanza.NSDiscoInfo, "query").ChildrenNamed(stanza.NSDiscoInfo, "feature") {
		vars = append(vars, f.AttrValue("var"))
	}
	return vars
}

// TestPluginHotLoad: a WebAssembly match profile dropped into push2d's
// plugins directory shows up in the account's disco#info without a
// restart, takes registrations and decides pushes; removing it takes it out
// of disco again.
func TestPluginHotLoad(t *testing.T) { eachServer(t, testPluginHotLoad) }

func testPluginHotLoad(t *testing.T, p server) {
	root, err := stack.Root()
	if err != nil {
		t.Fatal(err)
	}
	built := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "plugins", "build.sh"), "vip-c")
	cmd.Env = append(os.Environ(), "PUSH2_PLUGINS_OUT="+built)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build vip-c: %v\n%s", err, out)
	}
	plugins := t.TempDir()
	s := startStack(t, p, stack.Options{Push2dConfig: "\n[plugins]\ndir = \"" + plugins + "\"\nscan_every = \"100ms\"\nverify_cases = false\n"})
	domain := s.Server.Domain()
	const uri = "urn:push2:plugin:vip:0"
	pusher := login(t, s, "pusher", "svc", true)
	romeo := login(t, s, "boss", "desk", true)
	juliet := login(t, s, "juliet", "balcony", true)
	if slices.Contains(accountFeatures(t, juliet, "juliet@"+domain), uri) {
		t.Fatal("plugin profile advertised before it was loaded")
	}

	wasm, _ := os.ReadFile(filepath.Join(built, "vip-c.wasm"))
	if err := os.WriteFile(filepath.Join(plugins, "vip.wasm"), wasm, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() bool { return slices.Contains(accountFeatures(t, juliet, "juliet@"+domain), uri) })

	enable := `<enable xmlns="urn:xmpp:push2:0"><service>pusher@` + domain + `</service><client>vip-device</client>` +
		`<match profile="` + uri + `"><vip xmlns="urn:example:vip" jid="boss@` + domain + `"/><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`
	if resp := iq(t, juliet, "set", enable); resp.AttrValue("type") != "result" {
		t.Fatalf("enable with the plugin profile: %s", resp)
	}
	juliet.Close()
	time.Sleep(300 * time.Millisecond)
	send(t, romeo, chat("juliet@"+domain, "vip1", "Lunch?"))
	n := waitNotification(t, pusher, 15*time.Second)
	if p := n.Child(stanza.NSPush2, "notification").ChildText(stanza.NSPush2, "priority"); p != "high" {
		t.Errorf("VIP push priority %q, want high (the plugin's decision): %s", p, n)
	}
	type profile struct {
		URI    string `json:"uri"`
		Kind   string `json:"kind"`
		Source string `json:"source"`
	}
	var profiles []profile
	if err := s.AdminJSON("/profiles", &profiles); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(profiles, func(p profile) bool { return p.URI == uri }); i < 0 || profiles[i].Kind != "match" || !strings.HasPrefix(profiles[i].Source, "wasm vip") {
		t.Errorf("admin /profiles: %+v, want %s, a match profile from wasm vip…", profiles, uri)
	}

	os.Remove(filepath.Join(plugins, "vip.wasm"))
	other := login(t, s, "juliet", "garden", true)
	waitFor(t, 15*time.Second, func() bool { return !slices.Contains(accountFeatures(t, other, "juliet@"+domain), uri) })
}
