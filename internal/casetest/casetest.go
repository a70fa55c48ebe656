// Package casetest runs the test cases a WebAssembly profile ships with
// (sdk/ABI.md §13 "Test cases") through a real engine.Engine, the way OPA's
// tester runs a policy's tests: the module loaded in a host.Host next to the
// built-in profiles (profiles.Builtin), a temporary store, one registration
// per case. It returns structured results (Report, Result) that callers
// format: `push2 profile test` prints them as text or JSON, push2d's plugin
// watcher refuses a version whose shipped cases fail (Verify).
//
// The runner lives outside package host so that host imports only engine
// and wazero: running cases needs the built-in profiles, which a sandbox
// has no business depending on.
package casetest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/host"
	"github.com/push2/push2/profiles"
)

// Result is the outcome of one case.
type Result struct {
	// Name is the case's name attribute, File the base name of the case
	// file holding it.
	Name string `json:"name"`
	File string `json:"file"`
	Pass bool   `json:"pass"`
	// Diff says what differed from the case's <expect/> ("priority: got
	// high, want low"); empty when Pass.
	Diff string `json:"diff,omitempty"`
	// Detail is what the engine decided and built for a failing case (the
	// outcome, the notification stanza), to read next to Diff.
	Detail string `json:"detail,omitempty"`
	// Duration covers the case's enable, evaluation and checks.
	Duration time.Duration `json:"duration_ns"`
}

// Report is one run of a module's cases, in case file order then document
// order.
type Report struct {
	Module  string   `json:"module"` // the module's file name
	Cases   string   `json:"cases"`  // the cases directory or file
	Results []Result `json:"results"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	// Error is what prevented the run (the module does not load, a case
	// file is malformed). Run and RunModule return it as an error; it is a
	// field so that a JSON report carries it too. No case ran when it is
	// set.
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// OK reports whether at least one case ran and none failed.
func (r *Report) OK() bool { return r.Error == "" && r.Failed == 0 && r.Passed > 0 }

// JSON encodes the report as one line of JSON, the form `push2 profile test
// -json` prints and scripts/profile-test-all.sh reads.
func (r *Report) JSON() []byte {
	b, err := json.Marshal(r)
	if err != nil { // only strings, ints and bools: cannot happen
		panic(err)
	}
	return append(b, '\n')
}

// A FileError is a case file that cannot be used: unreadable, not XML, or
// not the format of sdk/ABI.md §13. No case runs when one file is bad, so a
// typo never silently drops a case.
type FileError struct {
	File string // path of the case file
	Err  error
}

func (e *FileError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Decrypter is implemented by a host.Crypto that can also open what Encrypt
// sealed, given the user agent's private key (the 32-byte P-256 scalar).
// <decrypt/> expectations need it; profiles/webpush's host crypto has it.
type Decrypter interface {
	Decrypt(uaPrivate, authSecret, body []byte) ([]byte, error)
}

// Run loads the module at wasmPath with a new host.Host made from cfg and
// runs the cases found in casesDir (a directory of *.xml files, or one file;
// empty: FindCases). The report is never nil; err (also in Report.Error) is
// for what prevents running at all: the module does not load, no cases, a
// *FileError.
func Run(ctx context.Context, cfg host.Config, wasmPath, casesDir string) (*Report, error) {
	rep := &Report{Module: filepath.Base(wasmPath), Cases: casesDir}
	fail := func(err error) (*Report, error) {
		rep.Error = err.Error()
		return rep, err
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return fail(err)
	}
	if casesDir == "" {
		if casesDir, err = FindCases(wasmPath); err != nil {
			return fail(err)
		}
		rep.Cases = casesDir
	}
	h, err := host.New(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	defer h.Close(ctx)
	m, err := h.Load(ctx, rep.Module, wasm)
	if err != nil {
		return fail(err)
	}
	defer m.Close()
	return RunModule(ctx, h, m, casesDir)
}

// FindCases returns the cases directory for a module file: WASM.cases/ next
// to the module, else ../NAME/cases relative to it (the plugins/build layout
// of plugins/build.sh), else cases/ next to it.
func FindCases(wasmPath string) (string, error) {
	base := strings.TrimSuffix(wasmPath, filepath.Ext(wasmPath))
	name := filepath.Base(base)
	dir := filepath.Dir(wasmPath)
	for _, c := range []string{base + ".cases", filepath.Join(dir, "..", name, "cases"), filepath.Join(dir, "cases")} {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("no test cases for %s: give a directory, or put them in %s.cases/", wasmPath, base)
}

// RunModule runs the cases in casesDir against m, a module h loaded, through
// an engine of its own with the built-in profiles and m's profiles. Errors
// are as for Run.
func RunModule(ctx context.Context, h *host.Host, m *host.Module, casesDir string) (*Report, error) {
	start := time.Now()
	rep := &Report{Module: m.Name(), Cases: casesDir}
	fail := func(err error) (*Report, error) {
		rep.Error = err.Error()
		return rep, err
	}
	files, err := caseFiles(casesDir)
	if err != nil {
		return fail(err)
	}
	var cases []*testCase
	for _, f := range files {
		cs, err := parseCaseFile(f)
		if err != nil {
			return fail(err)
		}
		cases = append(cases, cs...)
	}
	if len(cases) == 0 {
		return fail(fmt.Errorf("no cases in %s", casesDir))
	}
	store := memstore.New()
	defer store.Close()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		return fail(err)
	}
	if err := m.Register(reg); err != nil {
		return fail(err)
	}
	cfg := h.Config()
	eng := engine.New(store, reg, engine.Config{Logger: cfg.Logger})
	r := &caseRunner{eng: eng}
	r.decrypter, _ = cfg.Crypto.(Decrypter)
	for i, c := range cases {
		c.id = "case-" + strconv.Itoa(i+1)
		t0 := time.Now()
		diff, detail := r.run(ctx, c)
		res := Result{Name: c.name, File: c.file, Pass: diff == "", Diff: diff, Duration: time.Since(t0)}
		if res.Pass {
			rep.Passed++
		} else {
			res.Detail = detail
			rep.Failed++
		}
		rep.Results = append(rep.Results, res)
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// Verify is a host.WatcherConfig.Verify: it runs the cases shipped next to
// a module before that version goes live, and refuses it, naming the
// failing cases, if any fails.
func Verify(ctx context.Context, h *host.Host, m *host.Module, casesDir string) error {
	rep, err := RunModule(ctx, h, m, casesDir)
	if err != nil {
		return fmt.Errorf("its cases in %s could not run: %w", casesDir, err)
	}
	if rep.Failed > 0 {
		var fails []string
		for _, r := range rep.Results {
			if !r.Pass {
				fails = append(fails, fmt.Sprintf("%s (%s)", r.Name, r.File))
			}
		}
		return fmt.Errorf("%d of its %d cases in %s fail: %s", rep.Failed, rep.Passed+rep.Failed, casesDir, strings.Join(fails, "; "))
	}
	return nil
}
