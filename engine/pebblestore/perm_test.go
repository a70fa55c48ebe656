package pebblestore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine"
)

// withUmask runs the test under umask, the usual 022 of a service, and
// restores the process's umask after.
func withUmask(t *testing.T, umask int) {
	old := syscall.Umask(umask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// checkPrivate fails unless dir is 0700 and every file in it 0600.
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fileMode
		if d.IsDir() {
			want = dirMode
		} else {
			files++
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s: mode %o, want %o", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no files in the store")
	}
}

// TestPrivateUnderUmask022: a new store, written to, flushed and compacted
// (new WAL, SSTables, MANIFEST, OPTIONS) under umask 022, keeps its
// directory 0700 and every file 0600.
func TestPrivateUnderUmask022(t *testing.T) {
	withUmask(t, 0o022)
	for name, dir := range map[string]string{
		"new":          filepath.Join(t.TempDir(), "a", "store"),
		"existing-755": t.TempDir() + "/store",
	} {
		t.Run(name, func(t *testing.T) {
			if name == "existing-755" {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
			for round := range 3 {
				r := engine.StoredRegistration{Account: "juliet@capulet.lit", ID: fmt.Sprint("r", round), Created: t0, Enable: "<enable/>"}
				if _, err := s.PutRegistration(r, 0); err != nil {
					t.Fatal(err)
				}
				for i := range 500 {
					e := engine.OutboxEntry{ID: fmt.Sprintf("n%d-%d", round, i), Account: r.Account, Reg: r.ID, Stanza: strings.Repeat("k", 512), Created: t0}
					if err := s.PutOutbox(e, false); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.db.Compact([]byte("\x00"), []byte("\xff"), true); err != nil {
				t.Fatal(err)
			}
			// Closed first: Pebble deletes obsolete files in the
			// background.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkPrivate(t, dir)
			// Reopening (a new WAL, MANIFEST and OPTIONS) keeps it so.
			s, err = Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			checkPrivate(t, dir)
		})
	}
}

// TestRefusesExposedStore: a store other users can read is not opened, and
// the error says how to fix it.
func TestRefusesExposedStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode func(dir string) error
	}{
		{"dir 0755", func(dir string) error { return os.Chmod(dir, 0o755) }},
		{"file 0644", func(dir string) error { return os.Chmod(filepath.Join(dir, "CURRENT"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			s, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.PutRegistration(engine.StoredRegistration{Account: "juliet@capulet.lit", ID: "phone", Enable: "<enable/>"}, 5); err != nil {
				t.Fatal(err)
			}
			s.Close()
			if err := tc.mode(dir); err != nil {
				t.Fatal(err)
			}
			for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
				s, err := open(dir)
				if err == nil {
					s.Close()
					t.Fatalf("%s opened an exposed store", name)
				}
				if !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), "chmod -R go-rwx "+dir) {
					t.Errorf("%s: %v; want ErrExposed naming `chmod -R go-rwx %s`", name, err, dir)
				}
			}
			// The command in the message fixes it.
			if out, err := exec.Command("chmod", "-R", "go-rwx", dir).CombinedOutput(); err != nil {
				t.Fatalf("chmod: %v %s", err, out)
			}
			s, err = Open(dir)
			if err != nil {
				t.Fatalf("after chmod -R go-rwx: %v", err)
			}
			if regs, err := s.Registrations("juliet@capulet.lit"); err != nil || len(regs) != 1 {
				t.Errorf("registrations after the fix: %v %v", regs, err)
			}
			s.Close()
		})
	}
}

// TestCorruptRecordsReported: a record that does not decode is an error
// naming what it is, not a silently skipped or zero record.
func TestCorruptRecordsReported(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := engine.RegKey{Account: "juliet@capulet.lit", ID: "phone"}
	for _, key := range [][]byte{regKey(k), stateKey(k), disabledKey(k), []byte(prefixOutbox + "n1")} {
		if err := s.db.Set(key, []byte("{not json"), nil); err != nil {
			t.Fatal(err)
		}
	}
	for name, call := range map[string]func() error{
		"Registrations":       func() error { _, err := s.Registrations(k.Account); return err },
		"ForEachRegistration": func() error { return s.ForEachRegistration(func(engine.StoredRegistration) error { return nil }) },
		"ForEachOutbox":       func() error { return s.ForEachOutbox(func(engine.OutboxEntry) error { return nil }) },
		"RegState":            func() error { _, err := s.RegState(k); return err },
		"Disabled":            func() error { _, err := s.Disabled(k.Account); return err },
		"PutRegistration": func() error {
			_, err := s.PutRegistration(engine.StoredRegistration{Account: k.Account, ID: "tablet"}, 5)
			return err
		},
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%s on a corrupt record: %v", name, err)
		}
	}
}
