package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/pgstore"
	"github.com/push2/push2/internal/pgtest"
)

// TestStoreMigrate: push2 store migrate copies a Pebble store into an
// empty PostgreSQL database — registrations, outbox, dedupe marks, error
// states, disabled records — and checks the counts; the copy behaves as
// the original (same registrations, marks still count, same states and
// records). A second run into the now full database is refused, a DSN file
// others may read is refused, and push2 store lists the database.
func TestStoreMigrate(t *testing.T) {
	dir := t.TempDir()
	src, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	accounts := []string{"juliet@capulet.lit", "romeo@montague.lit", "nurse@capulet.lit"}
	for a, acct := range accounts {
		for i := range 3 {
			k := engine.RegKey{Account: acct, ID: fmt.Sprint("dev", i)}
			r := engine.StoredRegistration{Account: acct, ID: k.ID, Created: t0.Add(time.Duration(a*10+i) * time.Second),
				Enable: `<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example</service><client>` + k.ID + `</client></enable>`, Suspended: a == 2}
			if _, err := src.PutRegistration(r, 0); err != nil {
				t.Fatal(err)
			}
			e := engine.OutboxEntry{ID: fmt.Sprintf("n-%d-%d", a, i), Account: acct, Reg: k.ID, To: "pusher@push.example", Stanza: "<message/>", Created: t0, Due: t0}
			if i == 1 {
				e.Attempts, e.SentAt, e.LastErr = 1, t0.Add(time.Second), "wait/resource-constraint"
			}
			if _, err := src.RecordPush(k, []string{"s:" + e.ID, "a:" + e.ID}, t0, e); err != nil {
				t.Fatal(err)
			}
		}
	}
	jk := engine.RegKey{Account: accounts[0], ID: "dev1"}
	state := engine.RegState{Errors: 2, FirstError: t0, LastCondition: "item-not-found"}
	if err := src.PutRegState(jk, state); err != nil {
		t.Fatal(err)
	}
	rec := engine.DisabledRecord{Account: accounts[1], ID: "dev2", At: t0, Reason: "test", Errors: 16, FirstError: t0, LastCondition: "gone", Service: "pusher@push.example"}
	if err := src.DisableRegistration(engine.RegKey{Account: accounts[1], ID: "dev2"}, rec); err != nil {
		t.Fatal(err)
	}
	want, err := src.Count()
	if err != nil {
		t.Fatal(err)
	}
	wantRegs := map[string][]engine.StoredRegistration{}
	for _, a := range accounts {
		wantRegs[a], _ = src.Registrations(a)
	}
	src.Close()

	pg := pgtest.MustStart(t, pgtest.Options{})
	dsn := pg.NewDatabase(t)
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"store", "migrate", "-from", "pebble:" + dir, "-to", "postgres-file:" + dsnFile}, nil, &out, &errb); code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "the counts match") || !strings.Contains(out.String(), want.String()) {
		t.Errorf("migrate output:\n%s", out.String())
	}

	dst, err := pgstore.Open(t.Context(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, err := dst.Count()
	if err != nil {
		t.Fatal(err)
	}
	if got.Registrations != want.Registrations || got.Outbox != want.Outbox || got.Marks != want.Marks || got.States != want.States || got.Disabled != want.Disabled {
		t.Errorf("database holds %+v, the directory %+v", got, want)
	}
	if want.Registrations != 8 || want.Marks != 16 || want.Disabled != 1 || want.States != 1 || want.Outbox != 9 {
		t.Errorf("the source store is not what the test made: %+v", want)
	}
	for _, a := range accounts {
		regs, err := dst.Registrations(a)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := mustJSON(regs), mustJSON(wantRegs[a]); g != w {
			t.Errorf("%s: registrations\n got  %s\n want %s", a, g, w)
		}
	}
	if first, err := dst.RecordPush(jk, []string{"a:n-0-1"}, t0, engine.OutboxEntry{ID: "again", Account: jk.Account, Reg: jk.ID}); err != nil || first {
		t.Errorf("a migrated dedupe mark does not count: first %v, %v", first, err)
	}
	if st, err := dst.RegState(jk); err != nil || mustJSON(st) != mustJSON(state) {
		t.Errorf("error state %+v %v", st, err)
	}
	if recs, err := dst.Disabled(accounts[1]); err != nil || mustJSON(recs) != mustJSON([]engine.DisabledRecord{rec}) {
		t.Errorf("disabled %+v %v", recs, err)
	}
	if e, ok, err := dst.GetOutbox("n-0-1"); err != nil || !ok || e.Attempts != 1 || !e.SentAt.Equal(t0.Add(time.Second)) || e.LastErr != "wait/resource-constraint" {
		t.Errorf("outbox entry %+v %v %v", e, ok, err)
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"store", "migrate", "-from", "pebble:" + dir, "-to", "postgres-file:" + dsnFile}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "already holds") {
		t.Errorf("second migrate: exit %d %q", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"store", "-dsn-file", dsnFile, "registrations", "-account", accounts[0]}, nil, &out, &errb); code != 0 || strings.Count(out.String(), "\n") != 3 || !strings.Contains(out.String(), `"id":"dev1"`) {
		t.Errorf("store -dsn-file registrations: exit %d %q %q", code, out.String(), errb.String())
	}
	if err := os.Chmod(dsnFile, 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run([]string{"store", "-dsn-file", dsnFile, "outbox"}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "chmod 600") {
		t.Errorf("public DSN file: exit %d %q", code, errb.String())
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
