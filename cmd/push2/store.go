package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/pgstore"
	"github.com/push2/push2/engine/stanza"
)

// runStore is `push2 store -dir DIR registrations|outbox|disabled
// [-account JID]`: inspect a push2d store offline (push2d locks it while
// running; use its admin interface then). Output is JSON, one object per
// line. Registration keys and tokens are never printed: a registration is
// shown by its account, id, service and profiles.
func runStore(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the store directory (push2d's store.dir)")
	dsnFile := fs.String("dsn-file", "", "a PostgreSQL store instead: the file holding its DSN (push2d's store.dsn_file, mode 0600)")
	account := fs.String("account", "", "only this account (registrations, disabled)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Flags may come before or after the listing's name.
	var what string
	if fs.NArg() > 0 {
		what = fs.Arg(0)
		if what == "check" {
			return runStoreCheck(*dir, fs.Args()[1:], stdout, stderr)
		}
		if what == "migrate" {
			return runStoreMigrate(fs.Args()[1:], stdout, stderr)
		}
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	if (*dir == "") == (*dsnFile == "") || what == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, storeUsage)
		return 2
	}
	if (what == "disabled") && *account == "" {
		fmt.Fprintln(stderr, "push2 store: disabled needs -account")
		return 2
	}
	var st engine.Store
	var err error
	if *dsnFile != "" {
		st, err = openPostgres("postgres-file:" + *dsnFile)
	} else {
		st, err = pebblestore.OpenReadOnly(*dir)
	}
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			fmt.Fprintf(stderr, "push2 store: %s is in use (is push2d running?); stop it or use its admin interface (GET /registrations?account=…)\n", *dir)
		} else {
			fmt.Fprintln(stderr, "push2 store:", err)
		}
		return 1
	}
	defer st.Close()
	enc := json.NewEncoder(stdout)
	switch what {
	case "registrations":
		err := st.ForEachRegistration(func(r engine.StoredRegistration) error {
			if *account != "" && r.Account != *account {
				return nil
			}
			return enc.Encode(summarize(r))
		})
		if err != nil {
			fmt.Fprintln(stderr, "push2 store:", err)
			return 1
		}
	case "outbox":
		err := st.ForEachOutbox(func(e engine.OutboxEntry) error {
			return enc.Encode(struct {
				ID       string    `json:"id"`
				Account  string    `json:"account"`
				Reg      string    `json:"registration"`
				To       string    `json:"to"`
				Created  time.Time `json:"created"`
				Attempts int       `json:"attempts"`
				Due      time.Time `json:"due"`
				SentAt   time.Time `json:"sent,omitzero"`
				LastErr  string    `json:"last_error,omitempty"`
			}{e.ID, e.Account, e.Reg, e.To, e.Created, e.Attempts, e.Due, e.SentAt, e.LastErr})
		})
		if err != nil {
			fmt.Fprintln(stderr, "push2 store:", err)
			return 1
		}
	case "disabled":
		recs, err := st.Disabled(*account)
		if err != nil {
			fmt.Fprintln(stderr, "push2 store:", err)
			return 1
		}
		for _, r := range recs {
			enc.Encode(r)
		}
	default:
		fmt.Fprintf(stderr, "push2 store: unknown listing %q (want registrations, outbox or disabled)\n", what)
		return 2
	}
	return 0
}

const storeUsage = `usage: push2 store -dir DIR registrations|outbox|disabled [-account JID]
       push2 store -dsn-file FILE registrations|outbox|disabled [-account JID]
       push2 store -dir DIR check [-repair]
       push2 store migrate -from pebble:DIR -to postgres:DSN|postgres-file:FILE`

// openPostgres opens a PostgreSQL store named postgres:DSN or
// postgres-file:FILE (the DSN in a private file, so that the password is
// not on the command line, where other users see it in ps).
func openPostgres(spec string) (*pgstore.Store, error) {
	var dsn string
	switch {
	case strings.HasPrefix(spec, "postgres-file:"):
		var err error
		if dsn, err = pgstore.ReadDSNFile(strings.TrimPrefix(spec, "postgres-file:")); err != nil {
			return nil, err
		}
	case strings.HasPrefix(spec, "postgres:"):
		dsn = strings.TrimPrefix(spec, "postgres:")
	default:
		return nil, fmt.Errorf("%q: want postgres:DSN or postgres-file:FILE", pgstore.Redact(spec))
	}
	return pgstore.Open(context.Background(), dsn, pgstore.Options{})
}

// runStoreMigrate is `push2 store migrate -from pebble:DIR -to
// postgres:DSN|postgres-file:FILE`: copy a stopped push2d's Pebble store
// into an empty PostgreSQL database, in one transaction, and check that
// the database then holds as many records of each kind as the directory
// (exit 1 if not). The Pebble store is not changed.
func runStoreMigrate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("store migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "pebble:DIR, the store to copy (push2d stopped)")
	to := fs.String("to", "", "postgres:DSN or postgres-file:FILE, an empty database")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !strings.HasPrefix(*from, "pebble:") || *to == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, storeUsage)
		return 2
	}
	dir := strings.TrimPrefix(*from, "pebble:")
	src, err := pebblestore.OpenReadOnly(dir)
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			fmt.Fprintf(stderr, "push2 store migrate: %s is in use (is push2d running?); stop it first\n", dir)
		} else {
			fmt.Fprintln(stderr, "push2 store migrate:", err)
		}
		return 1
	}
	defer src.Close()
	want, err := src.Count()
	if err != nil {
		fmt.Fprintln(stderr, "push2 store migrate: read", dir+":", err)
		return 1
	}
	dst, err := openPostgres(*to)
	if err != nil {
		fmt.Fprintln(stderr, "push2 store migrate:", err)
		return 1
	}
	defer dst.Close()
	got, err := dst.Import(src)
	if err != nil {
		fmt.Fprintln(stderr, "push2 store migrate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", dir, want)
	fmt.Fprintf(stdout, "%s: %s\n", dst.Where(), pebblestore.Counts{Registrations: got.Registrations, Outbox: got.Outbox, Marks: got.Marks, States: got.States, Disabled: got.Disabled})
	if got.Registrations != want.Registrations || got.Outbox != want.Outbox || got.Marks != want.Marks || got.States != want.States || got.Disabled != want.Disabled {
		fmt.Fprintln(stderr, "push2 store migrate: the counts differ; the database was changed: drop its push2_ tables (or the database) before trying again")
		return 1
	}
	fmt.Fprintln(stdout, "the counts match; point push2d at the database ([store] kind = \"postgres\") and start it")
	return 0
}

// runStoreCheck is `push2 store -dir DIR check [-repair]`: say what a
// stopped push2d's store holds and whether it is damaged (exit 1 if so);
// with -repair, repair it as push2d --repair does (exit 0 once repaired).
func runStoreCheck(dir string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("store check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fix := fs.Bool("repair", false, "keep what is readable and set the rest aside (back up the directory first)")
	fs.StringVar(&dir, "dir", dir, "the store directory (push2d's store.dir)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if dir == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: push2 store -dir DIR check [-repair]")
		return 2
	}
	var rep *pebblestore.Report
	var err error
	if *fix {
		var st *pebblestore.Store
		if st, rep, err = pebblestore.OpenWith(dir, pebblestore.Options{Repair: true}); err == nil {
			err = st.Close()
		}
	} else {
		rep, err = pebblestore.Check(dir)
	}
	if err != nil && rep == nil {
		if strings.Contains(err.Error(), "lock") {
			fmt.Fprintf(stderr, "push2 store: %s is in use (is push2d running?); stop it first\n", dir)
		} else {
			fmt.Fprintln(stderr, "push2 store:", err)
		}
		return 1
	}
	if rep.Counted {
		fmt.Fprintf(stdout, "readable: %s\n", rep.Recovered)
	}
	if rep.Shutdown != nil {
		fmt.Fprintf(stdout, "at the last clean shutdown: %s\n", *rep.Shutdown)
	} else {
		fmt.Fprintln(stdout, "no record of a clean shutdown (after a crash, or a store never closed)")
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	for _, d := range rep.Damage {
		fmt.Fprintln(stdout, "damage:", d)
	}
	if rep.Lost != (pebblestore.Counts{}) {
		fmt.Fprintf(stdout, "written past the damage (lost): %s\n", rep.Lost)
	}
	for _, r := range rep.Repaired {
		fmt.Fprintln(stdout, "repaired:", r)
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, "push2 store:", err)
		return 1
	case !rep.Damaged():
		fmt.Fprintln(stdout, "the store is healthy")
	case *fix:
		fmt.Fprintln(stdout, "the store is repaired; push2d can start")
	default:
		fmt.Fprintf(stdout, "the store is damaged: back up %s, then run push2 store -dir %s check -repair (or push2d --repair)\n", dir, dir)
		return 1
	}
	return 0
}

type regSummary struct {
	Account  string    `json:"account"`
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Service  string    `json:"service"`
	Profiles []string  `json:"profiles"` // match profile → send profile
}

// summarize reads what an operator needs from a stored <enable/> without
// validating it (its profiles may be plugins not loaded here) and without
// any of its <send/> content, which holds keys.
func summarize(r engine.StoredRegistration) regSummary {
	s := regSummary{Account: r.Account, ID: r.ID, Created: r.Created, Profiles: []string{}}
	el, err := stanza.Parse([]byte(r.Enable))
	if err != nil {
		return s
	}
	if el.Is(stanza.NSXEP0357, "enable") {
		s.Service = el.AttrValue("jid")
		s.Profiles = append(s.Profiles, stanza.NSXEP0357)
		return s
	}
	s.Service = strings.TrimSpace(el.ChildText(stanza.NSPush2, "service"))
	for _, m := range el.ChildrenNamed(stanza.NSPush2, "match") {
		send := ""
		if sd := m.Child("", "send"); sd != nil {
			send = sd.Name.Space
		}
		s.Profiles = append(s.Profiles, m.AttrValue("profile")+" → "+send)
	}
	return s
}
