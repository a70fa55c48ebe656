package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/push2/push2/engine/pebblestore"
)

// TestRefusesExposedStore: push2d does not start on a store other users
// can read (it holds the registrations' keys) and says how to fix it.
func TestRefusesExposedStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(writeConfig(t, strings.Replace(validConfig, `dir = "/tmp/x"`, `dir = "`+dir+`"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), cfg)
	if !errors.Is(err, pebblestore.ErrExposed) || !strings.Contains(err.Error(), "chmod -R go-rwx "+dir) {
		t.Fatalf("run on a 0755 store: %v; want a refusal naming chmod -R go-rwx %s", err, dir)
	}
}
