package host

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPluginCases runs every plugin's cases, in every language, through a
// real engine: the same runner push2 profile test uses.
func TestPluginCases(t *testing.T) {
	for _, name := range pluginNames() {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			cfg := testConfig(t)
			passed, failed, err := RunCases(context.Background(), cfg, plugins[name], filepath.Join(repoRoot, "plugins", name, "cases"), &out)
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatal(err)
			}
			if failed != 0 || passed == 0 {
				t.Fatalf("%d passed, %d failed", passed, failed)
			}
		})
	}
}

// TestRunCasesReportsFailures: the runner is not vacuous — wrong
// expectations fail, each with a message saying what differed.
func TestRunCasesReportsFailures(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "wrong.xml")
	const cases = `<cases xmlns="urn:push2:cases:0">
  <enable xmlns="urn:xmpp:push2:0"><service>push.example.net</service><client>c</client>
    <match profile="urn:push2:plugin:vip:0"><vip xmlns="urn:example:vip" jid="boss@example.com"/><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>
  <case name="wrong priority"><stanza><message from="boss@example.com/x" type="chat" id="1"><body>hi</body></message></stanza><expect push="true" priority="low"/></case>
  <case name="wrong push"><stanza><message from="x@example.com/x" type="chat" id="2"><body>hi</body></message></stanza><expect push="true"/></case>
  <case name="wrong enable error"><expect enable-error="not-allowed"/></case>
  <case name="missing element"><stanza><message from="boss@example.com/x" type="chat" id="3"><body>hi</body></message></stanza><expect push="true"><present path="{urn:x}y"/></expect></case>
  <case name="right"><stanza><message from="boss@example.com/x" type="chat" id="4"><body>hi</body></message></stanza><expect push="true" priority="high" reason="pushed"/></case>
</cases>`
	if err := os.WriteFile(file, []byte(cases), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	passed, failed, err := RunCases(context.Background(), testConfig(t), plugins["vip-c"], dir, &out)
	t.Log("\n" + out.String())
	if err != nil || passed != 1 || failed != 4 {
		t.Fatalf("passed %d, failed %d, err %v", passed, failed, err)
	}
	for _, want := range []string{"priority: got high, want low", "push: got false, want true", "the registration was accepted; want not-allowed", `no element at "{urn:x}y"`, "1 passed, 4 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestFindCases: the default cases locations of push2 profile test.
func TestFindCases(t *testing.T) {
	got, err := FindCases(plugins["vip-c"])
	if err != nil || filepath.Base(filepath.Dir(got)) != "vip-c" {
		t.Fatalf("FindCases(plugins/build/vip-c.wasm) = %q, %v", got, err)
	}
	if _, err := FindCases(filepath.Join(t.TempDir(), "x.wasm")); err == nil {
		t.Fatal("found cases for a lone module")
	}
}
