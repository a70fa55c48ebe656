package pebblestore_test

import (
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/storetest"
)

func open(t testing.TB, dir string) *pebblestore.Store {
	t.Helper()
	s, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the store suite, with restarts: Reopen closes the
// database and opens the same directory again.
func TestConformance(t *testing.T) {
	dirs := map[engine.Store]string{}
	storetest.Run(t,
		func(t *testing.T) engine.Store {
			dir := t.TempDir()
			s := open(t, dir)
			dirs[s] = dir
			return s
		},
		storetest.Reopen(func(t *testing.T, s engine.Store) engine.Store {
			dir := dirs[s]
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			n := open(t, dir)
			dirs[n] = dir
			return n
		}))
}
