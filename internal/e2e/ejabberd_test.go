package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/internal/ejabberdtest"
	"github.com/push2/push2/internal/stack"
)

// TestEjabberdRefusesModPush: next to ejabberd's own mod_push (XEP-0357),
// which would answer the same <enable/>, the bridge refuses to start with
// a log line saying what to do, and ejabberd aborts its start-up.
func TestEjabberdRefusesModPush(t *testing.T) {
	ebin, err := stack.BuildEjabberdBridge()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := ejabberdtest.Start(ctx, ejabberdtest.Options{
		Dir:      t.TempDir(),
		BeamDirs: []string{ebin},
		Modules:  "mod_push2_bridge: {}\nmod_push: {}\n",
	})
	if err == nil {
		s.Close()
		t.Fatal("ejabberd started with mod_push next to mod_push2_bridge")
	}
	if !strings.Contains(err.Error(), "not loading mod_push2_bridge: mod_push enabled on localhost next to mod_push2_bridge: remove it") {
		t.Errorf("start-up error does not say why: %v", err)
	}
}

// TestEachServerCoversEjabberd: every test that runs on Prosody alone
// (eachProsody) is listed in notOnEjabberd with its reason, and the list
// names only such tests (a test moved to eachServer, or renamed, cannot
// stay there).
func TestEachServerCoversEjabberd(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\) \{\s*(eachProsody|eachServer)\(`)
	prosodyOnly, both := map[string]bool{}, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			if m[2] == "eachProsody" {
				prosodyOnly[m[1]] = true
			} else {
				both++
			}
		}
	}
	for name := range prosodyOnly {
		if notOnEjabberd[name] == "" {
			t.Errorf("%s runs on Prosody only and is not in notOnEjabberd (say why, or use eachServer)", name)
		}
	}
	for name := range notOnEjabberd {
		if !prosodyOnly[name] {
			t.Errorf("notOnEjabberd lists %s, which is not a Prosody-only test", name)
		}
	}
	if both < 16 {
		t.Errorf("only %d tests run on every server", both)
	}
}
