package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/cpubench"
	"github.com/push2/push2/internal/hostile"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/webpush"
)

// BenchmarkEvaluate measures the pipeline for one stanza against one
// registration: "suppressed" stops at the match profile (no store write),
// "pushed" goes through the send profile and the synced outbox write.
// "evals/cpu-s" is evaluations per second of one core's CPU time (the
// process's, from cpubench), the figure for the suppressed case; with -cpu 1
// the loop runs on one core.
//
//	go test -run '^$' -bench 'Evaluate/suppressed' -cpu 1 ./engine/
func BenchmarkEvaluate(b *testing.B) {
	for _, tc := range []struct{ name, profile, stanza string }{
		{"suppressed", "important", msgChatState},
		{"pushed", "all", msgBody},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, _, _ := newEngine(b, engine.Config{})
			ctx := context.Background()
			if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML(tc.profile)))); err != nil {
				b.Fatal(err)
			}
			stanzas := make([]*stanza.Element, 1024)
			for i := range stanzas {
				stanzas[i] = stanza.MustParse(strings.Replace(tc.stanza, `id="s`, `id="b`+strconv.Itoa(i)+`-`, 1))
			}
			b.ReportAllocs()
			b.ResetTimer()
			stop := cpubench.Start(b)
			for i := 0; i < b.N; i++ {
				st := stanzas[i%len(stanzas)]
				// Only a push records dedupe marks: a suppressed stanza can
				// come again without the cost of a copy in the loop.
				if i >= len(stanzas) && tc.name == "pushed" {
					st = st.Clone()
					st.SetAttr("id", "n"+strconv.Itoa(i))
				}
				if _, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}}); err != nil {
					b.Fatal(err)
				}
			}
			if cpu := stop(); cpu > 0 {
				b.ReportMetric(1e9/cpu, "evals/cpu-s")
			}
		})
	}
}

// worstStanzas are the costliest stanzas the parse limits let through,
// one per limit (engine/stanza MaxStanzaBytes, MaxDepth, MaxElements,
// MaxElementAttrs, MaxAttrs, MaxNameBytes), each as close to 256 KiB as the
// others allow. Each has id="w0000000000", which the benchmark numbers so
// that dedupe lets every iteration through.
func worstStanzas() map[string]string {
	const head = `<message xmlns="jabber:client" from="room@muc.capulet.lit/Nurse" to="juliet@capulet.lit" type="groupchat" id="w0000000000">`
	fill := func(part func(i int) string) string {
		var b strings.Builder
		b.WriteString(head)
		for i := 0; ; i++ {
			p := part(i)
			if b.Len()+len(p)+len("</message>") > stanza.MaxStanzaBytes {
				break
			}
			b.WriteString(p)
		}
		return b.String() + "</message>"
	}
	attrsOf := func(n int, value string) string {
		var b strings.Builder
		for j := range n {
			fmt.Fprintf(&b, ` a%d="%s"`, j, value)
		}
		return b.String()
	}
	// MaxAttrs in elements of MaxElementAttrs, values sized to fill the bytes.
	wide := stanza.MaxAttrs/stanza.MaxElementAttrs - 1 // the message has attributes too
	attrs := fill(func(i int) string {
		if i >= wide {
			return strings.Repeat("x", stanza.MaxStanzaBytes) // stop
		}
		return `<x xmlns="urn:example:attrs"><y` + attrsOf(stanza.MaxElementAttrs, "0123456") + `/></x>`
	})
	// MaxElements in chains MaxDepth deep, every level declaring a prefix
	// and using it on an attribute, with text.
	chain := func() string {
		var open, close strings.Builder
		for d := 0; d < stanza.MaxDepth-2; d++ {
			fmt.Fprintf(&open, `<p%d:e xmlns:p%d="urn:example:n%d" p%d:a="v">t`, d, d, d, d)
			fmt.Fprintf(&close, `</p%d:e>`, stanza.MaxDepth-3-d)
		}
		return open.String() + close.String()
	}
	deep := fill(func(i int) string {
		if (i+1)*(stanza.MaxDepth-2) >= stanza.MaxElements {
			return strings.Repeat("x", stanza.MaxStanzaBytes)
		}
		return chain()
	})
	// A body split into pieces by comments, matched against a long nick.
	pieces := head + "<body>" + strings.Repeat("a<!---->", (stanza.MaxStanzaBytes-len(head)-30)/8) + "</body></message>"
	// Names and prefixes at MaxNameBytes.
	long := strings.Repeat("n", stanza.MaxNameBytes-4)
	names := fill(func(i int) string {
		if i >= stanza.MaxElements-2 {
			return strings.Repeat("x", stanza.MaxStanzaBytes)
		}
		return fmt.Sprintf(`<%s%04d:%s xmlns:%s%04d="urn:example:names" %s%04d:%s="v"/>`, long, i, long, long, i, long, i, long)
	})
	// One body of 256 KiB, which the encrypted profile must cut to fit.
	body := head + "<body>" + strings.Repeat("Wherefore art thou Romeo? ", (stanza.MaxStanzaBytes-len(head)-30)/26) + "</body></message>"
	return map[string]string{"attributes": attrs, "elements": deep, "text-pieces": pieces, "names": names, "body": body}
}

// BenchmarkWorstStanza parses and evaluates each of worstStanzas for an
// account with two registrations that push every stanza (notify-only, and
// encrypted, which minimizes the stanza to fit the notification), on an
// in-memory store so that the numbers are CPU, not fsync. The user's nick
// is 1000 bytes of "a", the costliest for mention search in a body of
// "a"s.
//
//	go test -run '^$' -bench WorstStanza -benchtime 20x -count 3 ./engine/
func BenchmarkWorstStanza(b *testing.B) {
	id, err := webpush.GenerateIdentity()
	if err != nil {
		b.Fatal(err)
	}
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		b.Fatal(err)
	}
	e := engine.New(memstore.New(), reg, engine.Config{MaxRegistrations: 2})
	ctx := context.Background()
	encrypted := `<send xmlns="` + profiles.SendEncrypted + `"><ua-public>` + id.UAPublic + `</ua-public><auth-secret>` + id.AuthSecret +
		`</auth-secret><jwt-alg>ES256</jwt-alg><jwt-key>` + id.VAPIDPrivate + `</jwt-key><jwt-claim name="aud">https://push.example.com</jwt-claim></send>`
	for name, send := range map[string]string{"notify": notify, "encrypted": encrypted} {
		el := stanza.MustParse(enableXML(`<match profile="urn:xmpp:push2:match:all">` + send + `</match>`))
		if _, _, err := e.Enable(ctx, account, name, el); err != nil {
			b.Fatal(err)
		}
	}
	stanzas := worstStanzas()
	n := 0 // numbers the stanzas across runs (-count), which share the engine
	for _, name := range []string{"attributes", "elements", "text-pieces", "names", "body"} {
		raw := []byte(stanzas[name])
		b.Run(name, func(b *testing.B) {
			if _, err := stanza.Parse(raw); err != nil {
				b.Fatalf("%d bytes: %v", len(raw), err)
			}
			idAt := bytes.Index(raw, []byte(`id="w`)) + len(`id="w`)
			b.SetBytes(int64(len(raw)))
			stop := cpubench.Start(b)
			for b.Loop() {
				n++
				copy(raw[idAt:], fmt.Sprintf("%010d", n))
				st, err := stanza.Parse(raw)
				if err != nil {
					b.Fatal(err)
				}
				res, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: account, Trigger: engine.TriggerOffline, Nick: strings.Repeat("a", 1000)}})
				if err != nil || len(res.Notifications) != 2 {
					b.Fatalf("evaluate: %v, %+v", err, res.Outcomes)
				}
			}
			stop()
		})
	}
}

// BenchmarkReload measures what a reload of an account's registrations
// costs (after any of its enables, on a profile swap, at start): a fresh
// engine reads and parses the five registrations again.
// "stored-limit": five registrations of MaxEnableBytes (a custom
// profile's children inside <match/>, as attribute-heavy as the parse
// limits allow); "issue11": five enables with 205 KB of foreign children
// each, which are no longer stored.
//
//	go test -run '^$' -bench Reload -benchtime 20x -count 3 ./engine/
func BenchmarkReload(b *testing.B) {
	for _, tc := range []struct {
		name   string
		enable func() string
	}{
		{"stored-limit", func() string {
			base := enableXML(matchXML("all"))
			return enableXML(matchXML("all", hostile.Children("urn:example:profile", engine.DefaultLimits.MaxEnableBytes-len(base)-5000)))
		}},
		{"issue11", func() string {
			return strings.Replace(enableXML(matchXML("all")), "<service>", hostile.Children("urn:example:junk", issue11Bytes)+"<service>", 1)
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e, store, _ := newEngine(b, engine.Config{})
			ctx := context.Background()
			el := stanza.MustParse(tc.enable())
			for i := range 5 {
				if _, _, err := e.Enable(ctx, account, fmt.Sprint("device-", i), el); err != nil {
					b.Fatalf("%d bytes: %v", el.Size(), err)
				}
			}
			stored, _ := store.Registrations(account)
			total := 0
			for _, s := range stored {
				total += len(s.Enable)
			}
			// A fresh engine has no cache: it reads and parses the store
			// again. Making one costs a few allocations, included here.
			stop := cpubench.Start(b)
			for b.Loop() {
				fresh := engine.New(store, e.Registry(), engine.Config{})
				if regs, err := fresh.Registrations(ctx, account); err != nil || len(regs) != 5 {
					b.Fatalf("%d registrations, %v", len(regs), err)
				}
			}
			stop()
			b.ReportMetric(float64(total), "stored-bytes")
		})
	}
}
