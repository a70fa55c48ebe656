package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// TestAdminJSONDocumented: every JSON answer of the admin interface uses
// snake_case names only, and the fields each endpoint sends are exactly
// the ones docs/push2d.md lists for it (one table per endpoint). Every
// optional field is present in the data set up here, so a field missing
// from the docs, or documented but no longer sent, fails.
func TestAdminJSONDocumented(t *testing.T) {
	d, store := testDaemonStore(t, validConfig+"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \""+writeToken(t, testToken, 0o600)+"\"\n")
	eng := d.eng
	const acct = "juliet@example.org"
	if _, _, err := eng.Enable(t.Context(), acct, "balcony", stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>https://push.example.com/adlfkjadafdasf</client>`+
		`<match profile="urn:xmpp:push2:match:archived-with-body"><grace>144</grace><filter jid="somemuc@conference.example.com"><mention/></filter><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := store.DisableRegistration(engine.RegKey{Account: acct, ID: "old-phone"}, engine.DisabledRecord{
		Account: acct, ID: "old-phone", At: now, Reason: "3 notifications in a row failed", Errors: 3, FirstError: now.Add(-time.Minute), LastCondition: "item-not-found", Service: "pusher@push.example.com",
	}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d.adminHandler(ln.Addr())}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	documented := adminDocFields(t)
	for _, ep := range []struct{ method, path, doc string }{
		{"GET", "/profiles", "GET /profiles"},
		{"GET", "/registrations?account=" + acct, "GET /registrations"},
		{"GET", "/disabled?account=" + acct, "GET /disabled"},
		{"GET", "/outbox", "GET /outbox"},
		{"POST", "/ping?account=" + acct, "POST /ping"},
	} {
		req, _ := http.NewRequest(ep.method, "http://"+ln.Addr().String()+ep.path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s %s: %d %s %s", ep.method, ep.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s: %v: %s", ep.path, err, body)
		}
		got := map[string]bool{}
		jsonFields(v, "", got)
		if len(got) == 0 {
			t.Errorf("%s: no fields in %s (the test data should fill every field)", ep.doc, body)
		}
		for f := range got {
			if !snakeCase.MatchString(f) {
				t.Errorf("%s: field %q is not snake_case", ep.doc, f)
			}
		}
		if want := documented[ep.doc]; !slices.Equal(sorted(got), want) {
			t.Errorf("%s sends fields %v, docs/push2d.md documents %v", ep.doc, sorted(got), want)
		}
	}
}

// snakeCase is a field path as jsonFields writes it: snake_case names
// joined by ".", an array's elements' fields after "[].".
var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9_]*(\[\])?(\.[a-z][a-z0-9_]*(\[\])?)*$`)

// jsonFields adds every field name in v to out, nested ones as
// parent.child and fields of array elements as array[].field; a top-level
// array stands for its elements.
func jsonFields(v any, path string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			out[p] = true
			jsonFields(c, p, out)
		}
	case []any:
		if path != "" {
			path += "[]"
		}
		for _, c := range x {
			jsonFields(c, path, out)
		}
	}
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// adminDocFields reads docs/push2d.md: under each heading "#### `METHOD
// /path…`", the first column of the table lists the answer's fields.
func adminDocFields(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/push2d.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("^#### `(GET|POST) (/[a-z]+)")
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	out := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") {
			cur = ""
			if m := heading.FindStringSubmatch(line); m != nil {
				cur = m[1] + " " + m[2]
			}
			continue
		}
		if m := row.FindStringSubmatch(line); cur != "" && m != nil {
			out[cur] = append(out[cur], m[1])
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}
