package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
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
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	if *dir == "" || what == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: push2 store -dir DIR registrations|outbox|disabled [-account JID]\n       push2 store -dir DIR check [-repair]")
		return 2
	}
	if (what == "disabled") && *account == "" {
		fmt.Fprintln(stderr, "push2 store: disabled needs -account")
		return 2
	}
	st, err := pebblestore.OpenReadOnly(*dir)
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
