// Package testplugins builds the sample WebAssembly plugins for tests and
// says where they are: the tests of host and of internal/casetest run them.
// A missing toolchain is an error, never a skip.
package testplugins

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"
)

// Build runs plugins/build.sh below repoRoot (installing missing toolchains;
// a plugin already up to date is not rebuilt, so after `make plugins` this
// costs well under a second) and returns every plugin that ships cases, by
// directory name ("vip-go") → its .wasm in plugins/build. The script's
// output goes to stderr.
func Build(repoRoot string) (map[string]string, error) {
	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(repoRoot, "plugins", "build.sh"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("plugins/build.sh: %w", err)
	}
	fmt.Fprintf(os.Stderr, "testplugins: plugins built in %s\n", time.Since(start).Round(time.Millisecond))
	out := map[string]string{}
	dirs, _ := filepath.Glob(filepath.Join(repoRoot, "plugins", "*", "cases"))
	for _, d := range dirs {
		name := filepath.Base(filepath.Dir(d))
		p := filepath.Join(repoRoot, "plugins", "build", name+".wasm")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("plugin %s was not built: %w", name, err)
		}
		out[name] = p
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no plugins with cases under %s", filepath.Join(repoRoot, "plugins"))
	}
	return out, nil
}

// Names returns the plugin names of a Build result, sorted.
func Names(plugins map[string]string) []string {
	out := make([]string, 0, len(plugins))
	for n := range plugins {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
