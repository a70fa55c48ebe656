package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/push2/push2/internal/casetest"
)

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReport: totals add up, a failing case shows its diff and fails the
// run, and a plugin that did not run or wrote no report fails it too.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	ok := write(t, dir, "a.json", (&casetest.Report{Module: "a.wasm", Passed: 2, Results: []casetest.Result{{Name: "x", Pass: true}, {Name: "y", Pass: true}}}).JSON())
	bad := write(t, dir, "b.json", (&casetest.Report{Module: "b.wasm", Passed: 1, Failed: 1, Results: []casetest.Result{
		{Name: "x", Pass: true}, {Name: "wrong", File: "b.xml", Diff: "priority: got high, want low"}}}).JSON())
	broken := write(t, dir, "c.json", (&casetest.Report{Module: "c.wasm", Error: "c.xml: XML syntax error"}).JSON())
	garbage := write(t, dir, "d.json", []byte("panic: oops\n"))
	write(t, dir, "d.stderr", []byte("the stderr of d\n"))

	var out, errb bytes.Buffer
	if code := run([]string{ok}, &out, &errb); code != 0 || !strings.Contains(out.String(), "a.wasm: 2 passed, 0 failed\nplugins: 2 passed, 0 failed\n") {
		t.Errorf("passing: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{bad, []string{"--- FAIL: b.wasm: wrong (b.xml)\n    priority: got high, want low", "plugins: 3 passed, 1 failed\n"}},
		{broken, []string{"c.wasm: did not run: c.xml: XML syntax error", "plugins: 2 passed, 0 failed, 1 did not run"}},
		{garbage, []string{"plugins: 2 passed, 0 failed, 1 did not run", "not a push2 profile test -json report", "the stderr of d"}},
	} {
		out.Reset()
		errb.Reset()
		code := run([]string{ok, tc.file}, &out, &errb)
		for _, w := range tc.want {
			if !strings.Contains(out.String()+errb.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s%s", filepath.Base(tc.file), w, out.String(), errb.String())
			}
		}
		if code != 1 {
			t.Errorf("%s: exit %d, want 1", filepath.Base(tc.file), code)
		}
	}
	if code := run(nil, &out, &errb); code != 1 {
		t.Errorf("no reports: exit %d", code)
	}
}
