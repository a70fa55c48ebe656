package pebblestore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// Start-up checks. Pebble on its own recovers what it can read and says
// nothing about the rest: a damaged WAL silently loses every batch past the
// damage, a missing CURRENT makes it start a new database over the old
// files. Open therefore looks at the directory first (inspect) and refuses a
// damaged store with a *CorruptError unless Options.Repair is set.
//
// What can be told, and how:
//
//   - Missing CURRENT: the file naming the MANIFEST is gone while MANIFEST,
//     WAL or table files are there. Repair writes it again, naming the newest
//     MANIFEST.
//   - Damage inside a WAL: valid records of the same log after an unreadable
//     one (scanWAL). Repair keeps a copy of the file (NAME.damaged), cuts it
//     after the last readable record and reports what the records past the
//     damage held (Report.Lost).
//   - Anything lost since the last clean shutdown: Close writes a shutdown
//     record (shutdownFile: how many records each WAL had and how many
//     registrations, outbox entries… the store held); the next Open compares.
//     This is what catches a WAL truncated (or wiped) after a clean stop. A
//     successful open removes the record, so after a crash there is none and
//     only the structural checks apply: an unreadable end of the last WAL is
//     then the write the crash interrupted, which was never acknowledged.
//   - Checksum errors in tables: the start-up count reads every record.
//     Repair cannot help there (the data is gone); restore a back-up.

// shutdownFile holds the shutdownRecord of the last clean Close. Pebble
// ignores files whose names it does not know.
const shutdownFile = "PUSH2-SHUTDOWN"

type shutdownRecord struct {
	At         time.Time      `json:"at"`
	Counts     Counts         `json:"counts"`
	WALRecords map[string]int `json:"wal_records"`
}

// Counts is how many records of each kind a store holds.
type Counts struct {
	Registrations int `json:"registrations"`
	Outbox        int `json:"outbox"`
	Marks         int `json:"dedupe_marks"`
	States        int `json:"error_states"`
	Disabled      int `json:"disabled"`
}

func (c *Counts) add(key []byte, n int) {
	if len(key) < 2 {
		return
	}
	switch string(key[:2]) {
	case prefixReg:
		c.Registrations += n
	case prefixOutbox:
		c.Outbox += n
	case prefixMark:
		c.Marks += n
	case prefixState:
		c.States += n
	case prefixDisabled:
		c.Disabled += n
	}
}

func (c Counts) String() string {
	s := fmt.Sprintf("%d registrations, %d outbox entries, %d dedupe marks", c.Registrations, c.Outbox, c.Marks)
	if c.States > 0 {
		s += fmt.Sprintf(", %d error states", c.States)
	}
	if c.Disabled > 0 {
		s += fmt.Sprintf(", %d disabled records", c.Disabled)
	}
	return s
}

// Report is what Open or Check found in a store directory.
type Report struct {
	Dir string
	// Recovered is what the store holds: what Pebble can read of it (before
	// a repair, that is what a repair keeps). Valid when Counted.
	Recovered Counts
	Counted   bool
	// Shutdown is what the store held at its last clean shutdown; nil
	// after a crash, for a new store, or when that record is gone.
	Shutdown *Counts
	// Damage says what is wrong, one sentence each; empty for a healthy
	// store.
	Damage []string
	// Lost counts the records written (per kind) by the WAL records past
	// damage: what Pebble drops and a repair sets aside in the
	// NAME.damaged copies. A record written more than once counts each
	// time.
	Lost Counts
	// Unrepairable says why Repair cannot fix the damage, if it cannot.
	Unrepairable string
	// Notes are facts worth a log line that are not damage (an incomplete
	// last write after a crash).
	Notes []string
	// Repaired says what a repair did.
	Repaired []string

	plan repairPlan
}

// Damaged reports whether the store needs a repair.
func (r *Report) Damaged() bool { return len(r.Damage) > 0 }

type repairPlan struct {
	current string    // MANIFEST to name in a new CURRENT
	cut     []walScan // WALs to cut after their last readable record
}

// ErrCorrupt is wrapped by the *CorruptError Open returns for a damaged
// store.
var ErrCorrupt = errors.New("store damaged")

// CorruptError is a damaged store that Open refused to open.
type CorruptError struct{ Report *Report }

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func (e *CorruptError) Error() string {
	r := e.Report
	var b strings.Builder
	fmt.Fprintf(&b, "store %s is damaged: %s", r.Dir, strings.Join(r.Damage, "; "))
	if r.Counted {
		fmt.Fprintf(&b, "; readable: %s", r.Recovered)
	}
	if r.Shutdown != nil {
		fmt.Fprintf(&b, "; at the last clean shutdown: %s", *r.Shutdown)
	}
	if r.Lost != (Counts{}) {
		fmt.Fprintf(&b, "; written past the damage (lost): %s", r.Lost)
	}
	if r.Unrepairable != "" {
		fmt.Fprintf(&b, "; it cannot be repaired: %s", r.Unrepairable)
	} else {
		fmt.Fprintf(&b, "; to keep what is readable, back up the directory and run push2d --repair (or push2 store check --repair -dir %s)", r.Dir)
	}
	return b.String()
}

// Check inspects the store in dir without changing it (push2d must not be
// running: Pebble locks the directory). The report says what is readable and
// what is damaged.
func Check(dir string) (*Report, error) {
	if err := prepareDir(dir, false); err != nil {
		return nil, fmt.Errorf("store: check %s: %w", dir, err)
	}
	return inspect(dir)
}

func inspect(dir string) (*Report, error) {
	r := &Report{Dir: dir}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var current, pebbleFiles bool
	var manifest string
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == "CURRENT":
			current = true
		case strings.HasPrefix(n, "MANIFEST-"):
			pebbleFiles = true
			manifest = max(manifest, n) // fixed-width numbers
		case strings.HasSuffix(n, ".sst"), strings.HasSuffix(n, ".log"), strings.HasPrefix(n, "OPTIONS-"):
			pebbleFiles = true
		}
	}
	if !current {
		if !pebbleFiles {
			return r, nil // a new store
		}
		r.Damage = append(r.Damage, "CURRENT (the file naming the MANIFEST, the list of the store's tables) is missing")
		if manifest == "" {
			r.Unrepairable = "no MANIFEST is left either; restore a back-up"
		} else {
			r.plan.current = manifest
		}
	}
	var shut *shutdownRecord
	if b, err := os.ReadFile(filepath.Join(dir, shutdownFile)); err == nil {
		var s shutdownRecord
		if json.Unmarshal(b, &s) == nil {
			shut = &s
			r.Shutdown = &s.Counts
		}
	}
	logs, err := logFiles(dir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, name := range logs {
		seen[name] = true
		w, err := scanWAL(dir, name)
		if err != nil {
			return nil, err
		}
		last := i == len(logs)-1
		switch {
		case w.damaged():
			r.Damage = append(r.Damage, fmt.Sprintf("WAL %s is damaged at byte %d: %d records (committed batches) after that point are unreadable to Pebble and would be dropped", name, w.stop, len(w.beyond)))
			for _, rec := range w.beyond {
				countBatch(rec, &r.Lost)
			}
		case shut != nil && shut.WALRecords[name] > w.records:
			r.Damage = append(r.Damage, fmt.Sprintf("WAL %s holds %d readable records, %d at the clean shutdown of %s: it was truncated or overwritten since", name, w.records, shut.WALRecords[name], shut.At.Format(time.RFC3339)))
		case !w.clean && !last:
			r.Damage = append(r.Damage, fmt.Sprintf("WAL %s ends in an unreadable record although a newer WAL follows it", name))
		case !w.clean && shut != nil:
			r.Damage = append(r.Damage, fmt.Sprintf("WAL %s ends in an unreadable record after a clean shutdown", name))
		case !w.clean:
			r.Notes = append(r.Notes, fmt.Sprintf("WAL %s ends in an incomplete record: the write a crash interrupted, never acknowledged", name))
			continue
		default:
			continue
		}
		if !w.clean {
			r.plan.cut = append(r.plan.cut, w)
		}
	}
	if shut != nil {
		for name, n := range shut.WALRecords {
			if !seen[name] && n > 0 {
				r.Damage = append(r.Damage, fmt.Sprintf("WAL %s, with %d records at the clean shutdown, is missing", name, n))
			}
		}
	}
	if !current {
		return r, nil // Pebble would start afresh: nothing to count
	}
	db, err := pebble.Open(dir, &pebble.Options{FS: vfs.Default, Logger: &fatal{}, ReadOnly: true, ErrorIfNotExists: true})
	if err != nil {
		if r.Damaged() || pebble.IsCorruptionError(err) || errors.Is(err, os.ErrNotExist) {
			r.Damage = append(r.Damage, "Pebble cannot open it: "+err.Error())
			if len(r.plan.cut) == 0 {
				r.Unrepairable = "push2 cannot repair this; restore a back-up"
			}
			return r, nil
		}
		return nil, err
	}
	r.Recovered, err = count(db)
	db.Close()
	if err != nil {
		r.Damage = append(r.Damage, "reading its records failed: "+err.Error())
		r.Unrepairable = "a table is damaged (checksum error); push2 cannot repair this; restore a back-up"
		return r, nil
	}
	r.Counted = true
	if shut != nil && shut.Counts != r.Recovered {
		r.Damage = append(r.Damage, "records are missing since the clean shutdown of "+shut.At.Format(time.RFC3339))
	}
	return r, nil
}

// count reads every record of db (so a checksum error in any table shows).
func count(db *pebble.DB) (Counts, error) {
	var c Counts
	it, err := db.NewIter(nil)
	if err != nil {
		return c, err
	}
	for it.First(); it.Valid(); it.Next() {
		c.add(it.Key(), 1)
		_ = it.Value()
	}
	return c, errors.Join(it.Error(), it.Close())
}

// repair carries out r's plan: a new CURRENT, WALs cut after their last
// readable record (each kept whole as NAME.damaged first).
func repair(r *Report) error {
	if r.plan.current != "" {
		if err := writeSynced(filepath.Join(r.Dir, "CURRENT"), []byte(r.plan.current+"\n")); err != nil {
			return err
		}
		r.Repaired = append(r.Repaired, "wrote CURRENT naming "+r.plan.current)
	}
	for _, w := range r.plan.cut {
		p := filepath.Join(r.Dir, w.name)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := writeSynced(p+".damaged", b); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		err = errors.Join(f.Truncate(w.stop), f.Sync(), f.Close())
		if err != nil {
			return err
		}
		r.Repaired = append(r.Repaired, fmt.Sprintf("cut WAL %s after its %d readable records (byte %d of %d); the whole file is kept as %s.damaged", w.name, w.records, w.stop, w.size, w.name))
	}
	return syncDir(r.Dir)
}

// writeSynced writes a private file durably: a temporary file, synced,
// renamed over name.
func writeSynced(name string, b []byte) error {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err = errors.Join(err, f.Chmod(fileMode), f.Sync(), f.Close()); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// writeShutdownRecord is the last step of a clean Close: db is closed, c is
// what it held.
func writeShutdownRecord(dir string, c Counts) error {
	logs, err := logFiles(dir)
	if err != nil {
		return err
	}
	rec := shutdownRecord{At: time.Now().UTC(), Counts: c, WALRecords: map[string]int{}}
	for _, name := range logs {
		w, err := scanWAL(dir, name)
		if err != nil {
			return err
		}
		rec.WALRecords[name] = w.records
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeSynced(filepath.Join(dir, shutdownFile), b)
}

// removeShutdownRecord runs once the store is open for writing: from the
// first write on, the record no longer describes the store.
func removeShutdownRecord(dir string) error {
	err := os.Remove(filepath.Join(dir, shutdownFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(dir)
}
