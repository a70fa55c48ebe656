package casetest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/host"
	"github.com/push2/push2/profiles"
)

// TestPluginCases runs every plugin's cases, in every language, through a
// real engine: the same runner push2 profile test and push2d's watcher use.
func TestPluginCases(t *testing.T) {
	for _, name := range pluginNames() {
		t.Run(name, func(t *testing.T) {
			rep, err := Run(context.Background(), testConfig(t), plugins[name], filepath.Join(repoRoot, "plugins", name, "cases"))
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				if !r.Pass {
					t.Errorf("%s (%s): %s\n%s", r.Name, r.File, r.Diff, r.Detail)
				}
			}
			if rep.Failed != 0 || rep.Passed == 0 || !rep.OK() {
				t.Fatalf("%d passed, %d failed", rep.Passed, rep.Failed)
			}
		})
	}
}

const vipEnable = `<enable xmlns="urn:xmpp:push2:0"><service>push.example.net</service><client>c</client>
    <match profile="urn:push2:plugin:vip:0"><vip xmlns="urn:example:vip" jid="boss@example.com"/><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`

func writeCases(t *testing.T, name, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRunReportsFailures: the runner is not vacuous — wrong expectations
// fail, each with a diff saying what differed, and the right one passes;
// every result names its case and file and has a duration.
func TestRunReportsFailures(t *testing.T) {
	dir := writeCases(t, "wrong.xml", `<cases xmlns="urn:push2:cases:0">
  `+vipEnable+`
  <case name="wrong priority"><stanza><message from="boss@example.com/x" type="chat" id="1"><body>hi</body></message></stanza><expect push="true" priority="low"/></case>
  <case name="wrong push"><stanza><message from="x@example.com/x" type="chat" id="2"><body>hi</body></message></stanza><expect push="true"/></case>
  <case name="wrong enable error"><expect enable-error="not-allowed"/></case>
  <case name="missing element"><stanza><message from="boss@example.com/x" type="chat" id="3"><body>hi</body></message></stanza><expect push="true"><present path="{urn:x}y"/></expect></case>
  <case name="right"><stanza><message from="boss@example.com/x" type="chat" id="4"><body>hi</body></message></stanza><expect push="true" priority="high" reason="pushed"/></case>
</cases>`)
	rep, err := Run(context.Background(), testConfig(t), plugins["vip-c"], dir)
	if err != nil || rep.Passed != 1 || rep.Failed != 4 || rep.OK() || rep.Error != "" {
		t.Fatalf("passed %d, failed %d, err %v, report error %q", rep.Passed, rep.Failed, err, rep.Error)
	}
	want := []struct {
		name, diff, detail string
	}{
		{"wrong priority", "priority: got high, want low", "(outcome: pushed=true"},
		{"wrong push", "push: got false, want true", "(outcome: pushed=false"},
		{"wrong enable error", "the registration was accepted; want not-allowed", ""},
		{"missing element", `no element at "{urn:x}y"`, "(notification: "},
		{"right", "", ""},
	}
	if len(rep.Results) != len(want) {
		t.Fatalf("%d results, want %d: %+v", len(rep.Results), len(want), rep.Results)
	}
	for i, w := range want {
		r := rep.Results[i]
		if r.Name != w.name || r.File != "wrong.xml" || r.Pass != (w.diff == "") || r.Duration <= 0 {
			t.Errorf("result %d = %+v; want case %q in wrong.xml, pass %t, a duration", i, r, w.name, w.diff == "")
		}
		if r.Diff != w.diff {
			t.Errorf("%s: diff %q, want %q", w.name, r.Diff, w.diff)
		}
		if !strings.HasPrefix(r.Detail, w.detail) && !strings.Contains(r.Detail, w.detail) || (w.detail == "" && r.Detail != "") {
			t.Errorf("%s: detail %q, want it to contain %q", w.name, r.Detail, w.detail)
		}
	}
	if rep.Module != "vip-c.wasm" || rep.Cases != dir || rep.Duration <= 0 {
		t.Errorf("report header %q %q %s", rep.Module, rep.Cases, rep.Duration)
	}
}

// TestCaseFileError: a malformed case file stops the run before any case,
// as a *FileError naming the file and what is wrong, also in the report.
func TestCaseFileError(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"not XML", `<cases xmlns="urn:push2:cases:0"><case name="x">`, "XML"},
		{"wrong root", `<tests/>`, "the root element must be <cases"},
		{"no name", `<cases xmlns="urn:push2:cases:0">` + vipEnable + `<case><stanza><message/></stanza><expect push="true"/></case></cases>`, "needs a name attribute"},
		{"unknown trigger", `<cases xmlns="urn:push2:cases:0">` + vipEnable + `<case name="t"><context trigger="sometimes"/><stanza><message/></stanza><expect push="true"/></case></cases>`, `case "t": unknown trigger "sometimes"`},
		{"unknown element", `<cases xmlns="urn:push2:cases:0"><setup/></cases>`, "unexpected <setup/> in <cases/>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A good file sorts first: it must not run either.
			dir := writeCases(t, "b.xml", tc.body)
			good := `<cases xmlns="urn:push2:cases:0">` + vipEnable + `<case name="ok"><stanza><message from="boss@example.com/x" type="chat" id="1"><body>hi</body></message></stanza><expect push="true"/></case></cases>`
			if err := os.WriteFile(filepath.Join(dir, "a.xml"), []byte(good), 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := Run(context.Background(), testConfig(t), plugins["vip-c"], dir)
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != filepath.Join(dir, "b.xml") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (%T); want a *FileError for b.xml containing %q", err, err, tc.want)
			}
			if rep == nil || rep.Error != err.Error() || len(rep.Results) != 0 || rep.OK() {
				t.Fatalf("report %+v", rep)
			}
			var decoded map[string]any
			if err := json.Unmarshal(rep.JSON(), &decoded); err != nil || decoded["error"] != rep.Error || decoded["module"] != "vip-c.wasm" {
				t.Fatalf("JSON %s: %v", rep.JSON(), err)
			}
		})
	}
	// The module itself not loading is an error too, but no FileError.
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	os.WriteFile(bad, []byte("not wasm"), 0o644)
	rep, err := Run(context.Background(), testConfig(t), bad, writeCases(t, "a.xml", "<cases/>"))
	var fe *FileError
	if err == nil || errors.As(err, &fe) || rep.Error == "" || rep.OK() {
		t.Fatalf("a module that does not load: %v, %+v", err, rep)
	}
}

// TestReportJSON: the JSON field names scripts/profile-test-all.sh reads.
func TestReportJSON(t *testing.T) {
	rep, err := Run(context.Background(), testConfig(t), plugins["vip-c"], filepath.Join(repoRoot, "plugins", "vip-c", "cases"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Module  string `json:"module"`
		Passed  int    `json:"passed"`
		Failed  int    `json:"failed"`
		Results []struct {
			Name       string `json:"name"`
			File       string `json:"file"`
			Pass       bool   `json:"pass"`
			DurationNS int64  `json:"duration_ns"`
		} `json:"results"`
	}
	b := rep.JSON()
	if err := json.Unmarshal(b, &got); err != nil || b[len(b)-1] != '\n' || strings.Count(string(b), "\n") != 1 {
		t.Fatalf("%s: %v", b, err)
	}
	if got.Module != "vip-c.wasm" || got.Passed != rep.Passed || got.Passed == 0 || got.Failed != 0 || len(got.Results) != got.Passed {
		t.Fatalf("decoded %+v", got)
	}
	if r := got.Results[0]; r.Name == "" || r.File == "" || !r.Pass || r.DurationNS <= 0 {
		t.Fatalf("first result %+v", r)
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

// TestVerify: as the watcher's Verify hook, a version whose shipped cases
// fail does not go live.
func TestVerify(t *testing.T) {
	ctx := context.Background()
	h := newHost(t)
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := host.NewWatcher(h, reg, dir, host.WatcherConfig{Verify: Verify})
	defer w.Close()
	if err := os.Symlink(filepath.Join(repoRoot, "plugins", "vip-go", "cases"), filepath.Join(dir, "vip.cases")); err != nil {
		t.Fatal(err)
	}
	install := func(plugin string) {
		b, err := os.ReadFile(plugins[plugin])
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, ".vip.wasm.tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "vip.wasm")); err != nil {
			t.Fatal(err)
		}
		if err := w.Scan(ctx); err != nil {
			t.Fatal(err)
		}
	}
	install("vip-c")
	live := w.Modules()["vip.wasm"]
	if live == nil {
		t.Fatal("vip-c failed its own cases")
	}
	install("quiet-hours-rust") // passes none of vip's cases
	if w.Modules()["vip.wasm"] != live || !slices.Contains(reg.Features(), "urn:push2:plugin:vip:0") {
		t.Fatal("a version failing its cases went live")
	}
	// The error names the failing cases.
	m, err := h.Load(ctx, "qh.wasm", mustRead(t, plugins["quiet-hours-rust"]))
	if err != nil {
		t.Fatal(err)
	}
	err = Verify(ctx, h, m, filepath.Join(dir, "vip.cases"))
	if err == nil || !strings.Contains(err.Error(), "cases in") || !strings.Contains(err.Error(), "fail: ") || !strings.Contains(err.Error(), ".xml)") {
		t.Fatalf("Verify of a failing module: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
