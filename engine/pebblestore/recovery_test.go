package pebblestore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
)

const registrations = 20

// filled is a store directory holding registrations registrations and one
// push, closed cleanly.
func filled(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	s := open(t, dir)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range registrations {
		r := engine.StoredRegistration{Account: "juliet@example.org", ID: fmt.Sprintf("device-%02d", i), Created: t0.Add(time.Duration(i) * time.Second),
			Enable: `<enable xmlns="urn:xmpp:push2:0"><service>push@push.example</service><client>` + strings.Repeat("t", 100) + `</client></enable>`}
		if _, err := s.PutRegistration(r, 0); err != nil {
			t.Fatal(err)
		}
	}
	k := engine.RegKey{Account: "juliet@example.org", ID: "device-00"}
	if _, err := s.RecordPush(k, []string{"m1"}, t0, engine.OutboxEntry{ID: "n1", Account: k.Account, Reg: k.ID, To: "push@push.example"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// wal returns the path of the store's only WAL file.
func wal(t *testing.T, dir string) string {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(logs) != 1 {
		t.Fatalf("WAL files: %v", logs)
	}
	return logs[0]
}

// crashed removes the record of the clean shutdown: the directory is then
// what a crash after the same writes leaves (the same WAL, minus Pebble's
// end-of-log trailer, which no check relies on).
func crashed(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, "PUSH2-SHUTDOWN")); err != nil {
		t.Fatal(err)
	}
}

func refused(t *testing.T, dir string, wants ...string) *pebblestore.Report {
	t.Helper()
	s, rep, err := pebblestore.OpenWith(dir, pebblestore.Options{})
	var ce *pebblestore.CorruptError
	if !errors.Is(err, pebblestore.ErrCorrupt) || !errors.As(err, &ce) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a damaged store: %v; want ErrCorrupt", err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal %q does not say %q", err, w)
		}
	}
	if ce.Report != rep {
		t.Error("the error's report is not the one returned")
	}
	// Refusing changes nothing: a second try refuses the same way.
	if _, _, err2 := pebblestore.OpenWith(dir, pebblestore.Options{}); err2 == nil || err2.Error() != err.Error() {
		t.Errorf("second open: %v; first: %v", err2, err)
	}
	return rep
}

func repaired(t *testing.T, dir string) *pebblestore.Report {
	t.Helper()
	s, rep, err := pebblestore.OpenWith(dir, pebblestore.Options{Repair: true})
	if err != nil {
		t.Fatalf("repair: %v", err)
	}
	if len(rep.Repaired) == 0 && rep.Damaged() {
		t.Errorf("repair of %v did nothing", rep.Damage)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// After the repair the store opens normally and holds what it said.
	s, again, err := pebblestore.OpenWith(dir, pebblestore.Options{})
	if err != nil {
		t.Fatalf("open after repair: %v", err)
	}
	s.Close()
	if again.Damaged() || again.Recovered != rep.Recovered {
		t.Errorf("after repair: %+v; the repair said %+v", again, rep.Recovered)
	}
	return rep
}

// TestReportsRecovered: a healthy store opens with what it holds counted,
// and says it was shut down cleanly.
func TestReportsRecovered(t *testing.T) {
	dir := filled(t)
	s, rep, err := pebblestore.OpenWith(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := pebblestore.Counts{Registrations: registrations, Outbox: 1, Marks: 1}
	if rep.Damaged() || !rep.Counted || rep.Recovered != want || rep.Shutdown == nil || *rep.Shutdown != want {
		t.Errorf("report %+v; want %+v recovered and at shutdown", rep, want)
	}
	crashed(t, dir)
	s, rep, err = pebblestore.OpenWith(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if rep.Damaged() || rep.Recovered != want || rep.Shutdown != nil {
		t.Errorf("after a crash: %+v", rep)
	}
}

// TestTruncatedWAL: a WAL cut after a clean shutdown loses registrations;
// Open refuses and says how many; the repair keeps the readable ones and
// says what was lost.
func TestTruncatedWAL(t *testing.T) {
	dir := filled(t)
	p := wal(t, dir)
	fi, _ := os.Stat(p)
	if err := os.Truncate(p, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	rep := refused(t, dir, "20 registrations", "truncated", "--repair")
	if !rep.Counted || rep.Recovered.Registrations >= registrations || rep.Shutdown.Registrations != registrations {
		t.Errorf("report %+v", rep)
	}
	after := repaired(t, dir)
	if after.Recovered.Registrations != rep.Recovered.Registrations || after.Shutdown.Registrations != registrations {
		t.Errorf("repair: %+v", after)
	}
}

// TestGarbledWAL: a damaged record in the middle of the WAL is refused
// even after a crash (no shutdown record), because valid records follow
// it; the repair keeps the file as .damaged and counts what lay past.
func TestGarbledWAL(t *testing.T) {
	dir := filled(t)
	crashed(t, dir)
	p := wal(t, dir)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := refused(t, dir, "damaged at byte", "would be dropped")
	if rep.Lost.Registrations == 0 || rep.Recovered.Registrations+rep.Lost.Registrations < registrations-1 {
		t.Errorf("lost %+v, readable %+v", rep.Lost, rep.Recovered)
	}
	after := repaired(t, dir)
	if after.Recovered.Registrations != rep.Recovered.Registrations || after.Lost != rep.Lost {
		t.Errorf("repair: %+v", after)
	}
	if kept, err := os.ReadFile(p + ".damaged"); err != nil || string(kept) != string(b) {
		t.Errorf("the damaged WAL is not kept whole: %v", err)
	}
}

// TestTornLastWrite: after a crash, an incomplete record at the very end
// of the WAL is the write the crash interrupted (never acknowledged): not
// damage.
func TestTornLastWrite(t *testing.T) {
	dir := filled(t)
	crashed(t, dir)
	p := wal(t, dir)
	fi, _ := os.Stat(p)
	if err := os.Truncate(p, fi.Size()-20); err != nil {
		t.Fatal(err)
	}
	s, rep, err := pebblestore.OpenWith(dir, pebblestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if rep.Damaged() || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "incomplete") {
		t.Errorf("report %+v", rep)
	}
}

// TestMissingCurrent: without CURRENT, Pebble would start an empty
// database over the old files (it panicked); Open refuses, and the repair
// names the MANIFEST again and loses nothing.
func TestMissingCurrent(t *testing.T) {
	dir := filled(t)
	// Once more through a writable open, so the data is in a table too.
	s := open(t, dir)
	s.Close()
	if err := os.Remove(filepath.Join(dir, "CURRENT")); err != nil {
		t.Fatal(err)
	}
	refused(t, dir, "CURRENT", "missing", "--repair")
	if _, err := pebblestore.OpenReadOnly(dir); err == nil || !strings.Contains(err.Error(), "store check") {
		t.Errorf("read-only open without CURRENT: %v", err)
	}
	rep := repaired(t, dir)
	if rep.Recovered.Registrations != registrations {
		t.Errorf("after repair: %+v", rep.Recovered)
	}
}

// TestDamagedTable: a checksum error in a table is found by the start-up
// count and refused; no repair can bring the data back.
func TestDamagedTable(t *testing.T) {
	dir := filled(t)
	s := open(t, dir) // replays the WAL into a table
	s.Close()
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table")
	}
	b, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 0xff // in the first data block
	if err := os.WriteFile(tables[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, dir, "checksum", "cannot be repaired")
	if _, _, err := pebblestore.OpenWith(dir, pebblestore.Options{Repair: true}); !errors.Is(err, pebblestore.ErrCorrupt) {
		t.Errorf("repair of a damaged table: %v", err)
	}
}
