package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/webpush"
)

func TestStore(t *testing.T) {
	dir := t.TempDir()
	st, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := engine.NewRegistry()
	reg.Register(profiles.Builtin())
	e := engine.New(st, reg, engine.Config{})
	id, _ := webpush.GenerateIdentity()
	enc := `<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example</service><client>c</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:sce+rfc8291+rfc8292:0"><ua-public>` + id.UAPublic + `</ua-public><auth-secret>` + id.AuthSecret + `</auth-secret></send></match></enable>`
	if _, _, err := e.Enable(context.Background(), "juliet@capulet.lit", "phone", stanza.MustParse(enc)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Evaluate(context.Background(), &engine.Event{Stanza: stanza.MustParse(`<message xmlns="jabber:client" from="romeo@montague.lit/o" id="m1" type="chat"><body>hi</body></message>`), Context: engine.Context{Account: "juliet@capulet.lit"}}); err != nil {
		t.Fatal(err)
	}

	// While the store is open (push2d running), inspection says so.
	var out, errb bytes.Buffer
	if code := run([]string{"store", "-dir", dir, "registrations"}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "push2d running") {
		t.Errorf("store in use: exit %d %q", code, errb.String())
	}
	st.Close()

	out.Reset()
	if code := run([]string{"store", "-dir", dir, "registrations", "-account", "juliet@capulet.lit"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	got := out.String()
	for _, want := range []string{`"id":"phone"`, `"service":"pusher@push.example"`, `urn:xmpp:push2:match:all → urn:xmpp:push2:send:sce+rfc8291+rfc8292:0`} {
		if !strings.Contains(got, want) {
			t.Errorf("registrations lack %s: %s", want, got)
		}
	}
	if strings.Contains(got, id.AuthSecret) || strings.Contains(got, id.UAPublic) {
		t.Errorf("keys printed: %s", got)
	}
	out.Reset()
	if code := run([]string{"store", "-dir", dir, "outbox"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), `"registration":"phone"`) || strings.Contains(out.String(), "<message") {
		t.Errorf("outbox: exit %d %s", code, out.String())
	}
	for _, args := range [][]string{{"store"}, {"store", "-dir", dir}, {"store", "-dir", dir, "things"}, {"store", "-dir", dir, "disabled"}} {
		if code := run(args, nil, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
	if code := run([]string{"store", "-dir", t.TempDir() + "/none", "outbox"}, nil, &out, &errb); code != 1 {
		t.Errorf("missing store: exit %d", code)
	}
}

// TestStoreRefusesExposed: push2 store does not read a store other users
// can read, and says how to make it private.
func TestStoreRefusesExposed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	st, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"store", "-dir", dir, "outbox"}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "chmod -R go-rwx "+dir) {
		t.Errorf("exposed store: exit %d %q", code, errb.String())
	}
}

// TestStoreCheck: push2 store check says what a store holds; on a damaged
// one (a WAL cut after a clean stop) it says what is wrong and exits 1;
// with -repair it keeps what is readable, says what was lost, and the store
// is healthy afterwards.
func TestStoreCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	st, err := pebblestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		r := engine.StoredRegistration{Account: "juliet@capulet.lit", ID: fmt.Sprintf("d%02d", i), Created: time.Now(), Enable: "<enable xmlns='urn:xmpp:push2:0'>" + strings.Repeat(" ", 100) + "</enable>"}
		if _, err := st.PutRegistration(r, 0); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	check := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"store", "-dir", dir, "check"}, args...), nil, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := check(); code != 0 || !strings.Contains(out, "readable: 20 registrations") || !strings.Contains(out, "healthy") {
		t.Fatalf("healthy store: exit %d\n%s", code, out)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	fi, _ := os.Stat(logs[0])
	if err := os.Truncate(logs[0], fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	for range 2 { // checking changes nothing
		code, out := check()
		if code != 1 || !strings.Contains(out, "damage: WAL") || !strings.Contains(out, "readable: 10 registrations") || !strings.Contains(out, "at the last clean shutdown: 20 registrations") {
			t.Fatalf("damaged store: exit %d\n%s", code, out)
		}
	}
	if code, out := check("-repair"); code != 0 || !strings.Contains(out, "repaired") || !strings.Contains(out, "readable: 10 registrations") {
		t.Fatalf("repair: exit %d\n%s", code, out)
	}
	if code, out := check(); code != 0 || !strings.Contains(out, "readable: 10 registrations") || !strings.Contains(out, "healthy") {
		t.Fatalf("after repair: exit %d\n%s", code, out)
	}
}
