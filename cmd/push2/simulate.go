package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/xep0357"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func runSimulate(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var enables, activity multiFlag
	fs.Var(&enables, "enable", "file with an <enable xmlns='urn:xmpp:push2:0'/>, or XEP-0357's <enable xmlns='urn:xmpp:push:0'/> (repeatable: one registration each)")
	stanzaFile := fs.String("stanza", "", "file with the stanza the server would miss-deliver (- for stdin)")
	trigger := fs.String("trigger", "offline", "offline|hibernated|ack-delayed|archived|groupchat")
	account := fs.String("account", "user@localhost", "bare JID of the account the stanza is for")
	clientID := fs.String("client-id", "simulated", "registration id (SASL2 client id or resource); repeated --enable get ID, ID-2, ID-3…")
	nick := fs.String("nick", "", "the user's nick in the room the stanza comes from")
	archiveID := fs.String("archive-id", "", "the stanza-id the user's archive assigned")
	fs.Var(&activity, "activity", "SESSION=SECONDS_AGO: another session of the account was active that long ago (repeatable; for <grace/>)")
	pluginsDir := fs.String("plugins", "", "directory of WebAssembly profiles (.wasm) to load besides the built-ins")
	explain := fs.Bool("explain", false, "say on stderr why each registration did or did not get a push")
	var x xep0357.Options
	fs.BoolVar(&x.WithBody, "xep0357-with-body", false, "XEP-0357 publishes carry the real body (push2d: xep0357.with_body)")
	fs.BoolVar(&x.WithSender, "xep0357-with-sender", false, "XEP-0357 publishes carry the real sender (push2d: xep0357.with_sender)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "push2 simulate: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if len(enables) == 0 || *stanzaFile == "" {
		fmt.Fprintln(stderr, "push2 simulate: --enable and --stanza are required")
		return 2
	}
	trig, ok := engine.ParseTrigger(*trigger)
	if !ok {
		fmt.Fprintf(stderr, "push2 simulate: unknown --trigger %q (want offline, hibernated, ack-delayed, archived or groupchat)\n", *trigger)
		return 2
	}

	store := memstore.New()
	defer store.Close()
	reg := engine.NewRegistry()
	// The profile set push2d builds with its default configuration
	// (XEP-0357 served, mod_cloud_notify's privacy defaults).
	if err := reg.Register(profiles.BuiltinWith(profiles.Options{XEP0357: &x})); err != nil {
		fmt.Fprintln(stderr, "push2 simulate:", err)
		return 1
	}
	ctx := context.Background()
	if *pluginsDir != "" {
		closePlugins, err := loadPlugins(ctx, *pluginsDir, reg)
		if err != nil {
			fmt.Fprintf(stderr, "push2 simulate: --plugins %s: %v\n", *pluginsDir, err)
			return 1
		}
		defer closePlugins()
	}
	eng := engine.New(store, reg, engine.Config{MaxRegistrations: len(enables)})

	for i, file := range enables {
		el, err := readElement(file)
		if err != nil {
			fmt.Fprintf(stderr, "push2 simulate: --enable %s: %v\n", file, err)
			return 1
		}
		id := *clientID
		if i > 0 {
			id = fmt.Sprintf("%s-%d", *clientID, i+1)
		}
		if _, _, err := eng.Enable(ctx, *account, id, el); err != nil {
			fmt.Fprintf(stderr, "push2 simulate: --enable %s refused: %s\n", file, describe(err))
			return 1
		}
	}
	now := time.Now()
	for _, a := range activity {
		sess, ago, ok := strings.Cut(a, "=")
		secs, err := strconv.ParseUint(ago, 10, 32)
		if !ok || sess == "" || err != nil {
			fmt.Fprintf(stderr, "push2 simulate: --activity %q: want SESSION=SECONDS_AGO\n", a)
			return 2
		}
		eng.NoteActivity(*account, sess, now.Add(-time.Duration(secs)*time.Second))
	}
	st, err := readElement(*stanzaFile)
	if err != nil {
		fmt.Fprintf(stderr, "push2 simulate: --stanza %s: %v\n", *stanzaFile, err)
		return 1
	}
	res, err := eng.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{
		Account: *account, Trigger: trig, Nick: *nick, ArchiveID: *archiveID, Now: now,
	}})
	if err != nil {
		fmt.Fprintf(stderr, "push2 simulate: %s\n", describe(err))
		return 1
	}
	if *explain {
		for _, o := range res.Outcomes {
			verdict := "no push"
			if o.Pushed {
				verdict = "push"
			}
			fmt.Fprintf(stderr, "%s: %s — %s", o.Reg.ID, verdict, o.Reason)
			if o.Profile != "" {
				fmt.Fprintf(stderr, " [%s]", o.Profile)
			}
			fmt.Fprintln(stderr)
		}
	}
	for _, n := range res.Notifications {
		fmt.Fprintf(stdout, "%s\n", n.Stanza.MarshalIn(stanza.NSClient))
	}
	return 0
}

// readElement reads one XML element from a file, or stdin for "-".
func readElement(file string) (*stanza.Element, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(io.LimitReader(os.Stdin, stanza.MaxStanzaBytes+1))
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	el, err := stanza.Parse(b)
	if err != nil {
		return nil, err
	}
	return el, nil
}

func describe(err error) string {
	var se *stanza.Error
	if errors.As(err, &se) {
		return se.Error()
	}
	return err.Error()
}
