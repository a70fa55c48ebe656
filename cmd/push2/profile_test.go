package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/push2/push2/internal/casetest"
)

// buildPlugin builds one sample plugin from source into a directory of the
// test's own (plugins/build.sh honours PUSH2_PLUGINS_OUT).
func buildPlugin(t *testing.T, name string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("../../plugins/build.sh", name)
	cmd.Env = append(os.Environ(), "PUSH2_PLUGINS_OUT="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("plugins/build.sh %s: %v\n%s", name, err, b)
	}
	return filepath.Join(out, name+".wasm")
}

func TestProfileTest(t *testing.T) {
	wasm := buildPlugin(t, "vip-c")
	var out, errb bytes.Buffer
	code := run([]string{"profile", "test", wasm, "../../plugins/vip-c/cases"}, nil, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "21 passed, 0 failed") {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	// A case that expects the wrong thing fails the command.
	bad := t.TempDir()
	b, _ := os.ReadFile("../../plugins/vip-c/cases/vip.xml")
	os.WriteFile(filepath.Join(bad, "vip.xml"), bytes.Replace(b, []byte(`<expect push="true" priority="high" voip="false"/>`), []byte(`<expect push="false"/>`), 1), 0o600)
	out.Reset()
	if code := run([]string{"profile", "test", wasm, bad}, nil, &out, &errb); code != 1 || !strings.Contains(out.String(), "1 failed") {
		t.Errorf("a failing case: exit %d\n%s", code, out.String())
	}
	for _, args := range [][]string{{"profile"}, {"profile", "run", wasm}, {"profile", "test"}} {
		if code := run(args, nil, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	if code := run([]string{"profile", "test", "/nonexistent.wasm", bad}, nil, &out, &errb); code != 1 {
		t.Errorf("missing module: exit %d", code)
	}
}

// TestProfileTestJSON: -json prints the structured report, for a passing
// run, a failing case (with its diff) and a module that does not load.
func TestProfileTestJSON(t *testing.T) {
	wasm := buildPlugin(t, "vip-c")
	var out, errb bytes.Buffer
	if code := run([]string{"profile", "test", "-json", wasm, "../../plugins/vip-c/cases"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	var rep casetest.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Module != "vip-c.wasm" || rep.Passed != 21 || rep.Failed != 0 || len(rep.Results) != 21 {
		t.Fatalf("report %+v, %v\n%s", rep, err, out.String())
	}
	bad := t.TempDir()
	b, _ := os.ReadFile("../../plugins/vip-c/cases/vip.xml")
	os.WriteFile(filepath.Join(bad, "vip.xml"), bytes.Replace(b, []byte(`<expect push="true" priority="high" voip="false"/>`), []byte(`<expect push="false"/>`), 1), 0o600)
	out.Reset()
	if code := run([]string{"profile", "test", "-json", wasm, bad}, nil, &out, &errb); code != 1 {
		t.Errorf("a failing case: exit %d", code)
	}
	rep = casetest.Report{}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || rep.Failed != 1 {
		t.Fatalf("failing report %+v, %v", rep, err)
	}
	for _, r := range rep.Results {
		if !r.Pass && r.Diff != "push: got true, want false" {
			t.Errorf("failing case %q: diff %q", r.Name, r.Diff)
		}
	}
	out.Reset()
	if code := run([]string{"profile", "test", "-json", "/nonexistent.wasm", bad}, nil, &out, &errb); code != 1 {
		t.Errorf("missing module: exit %d", code)
	}
	rep = casetest.Report{}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || !strings.Contains(rep.Error, "nonexistent.wasm") {
		t.Errorf("missing module: report %+v, %v", rep, err)
	}
}

func TestSimulateWithPlugins(t *testing.T) {
	wasm := buildPlugin(t, "vip-c")
	dir := filepath.Dir(wasm)
	enable := writeFile(t, "enable.xml", `<enable xmlns="urn:xmpp:push2:0"><service>push.example.net</service><client>c</client>
<match profile="urn:push2:plugin:vip:0"><vip xmlns="urn:example:vip" jid="boss@example.com"/><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)
	vip := writeFile(t, "vip.xml", `<message xmlns="jabber:client" from="boss@example.com/desk" type="chat" id="v1"><body>Lunch?</body></message>`)
	other := writeFile(t, "other.xml", `<message xmlns="jabber:client" from="romeo@example.net/x" type="chat" id="v2"><body>hi</body></message>`)
	var out, errb bytes.Buffer
	if code := run([]string{"simulate", "--plugins", dir, "--enable", enable, "--stanza", vip}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "<priority>high</priority>") {
		t.Errorf("vip: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"simulate", "--plugins", dir, "--enable", enable, "--stanza", other}, nil, &out, &errb); code != 0 || out.Len() != 0 {
		t.Errorf("other: exit %d\n%s%s", code, out.String(), errb.String())
	}
	// Without --plugins the profile is unknown.
	errb.Reset()
	if code := run([]string{"simulate", "--enable", enable, "--stanza", vip}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "feature-not-implemented") {
		t.Errorf("no plugins: exit %d %s", code, errb.String())
	}
	if code := run([]string{"simulate", "--plugins", t.TempDir(), "--enable", enable, "--stanza", vip}, nil, &out, &errb); code != 1 {
		t.Errorf("empty plugins dir: exit %d", code)
	}
}
