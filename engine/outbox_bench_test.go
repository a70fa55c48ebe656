package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// BenchmarkOutbox measures the outbox with 10,000 notifications pending, on
// the in-memory store so that the outbox's own work is what is timed (the
// Pebble store adds its synced write per accepted notification):
//
//   - accept: one more notification accepted (Evaluate) and sent while
//     10,000 wait for a retry an hour away, per op;
//
//   - drain: 10,000 notifications due at once (after a restart, say), all
//     sent in creation order, per op.
//
//     go test -run '^$' -bench Outbox -benchtime 2s ./engine/
func BenchmarkOutbox(b *testing.B) {
	const pending = 10000
	b.Run("accept", func(b *testing.B) {
		store := memstore.New()
		later := time.Now().Add(time.Hour)
		for i := range pending {
			e := engine.OutboxEntry{ID: fmt.Sprint("p", i), Account: account, Reg: "phone", To: "pusher@push.example.com",
				Stanza: "<message/>", Created: later.Add(-time.Duration(rand.N(3600)) * time.Second), Due: later, Attempts: 1}
			if err := store.PutOutbox(e, false); err != nil {
				b.Fatal(err)
			}
		}
		e := benchEngine(b, store)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		sent := make(chan string, 1)
		go e.Outbox().Run(ctx, func(_ context.Context, en engine.OutboxEntry) error { sent <- en.ID; return nil })
		msgs := make([]*stanza.Element, b.N)
		for i := range msgs {
			msgs[i] = stanza.MustParse(`<message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="juliet@capulet.lit" type="chat" id="a` + strconv.Itoa(i) + `"><body>Art thou not Romeo?</body></message>`)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			res, err := e.Evaluate(ctx, &engine.Event{Stanza: msgs[i], Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}})
			if err != nil || len(res.Notifications) != 1 {
				b.Fatalf("evaluate: %v %+v", err, res)
			}
			if id := <-sent; id != res.Notifications[0].ID {
				b.Fatalf("sent %s, want %s", id, res.Notifications[0].ID)
			}
		}
	})
	b.Run("drain", func(b *testing.B) {
		now := time.Now()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			store := memstore.New()
			for j, k := range rand.Perm(pending) {
				e := engine.OutboxEntry{ID: fmt.Sprint("d", j), Account: account, Reg: "phone", To: "pusher@push.example.com",
					Stanza: "<message/>", Created: now.Add(-time.Duration(k) * time.Millisecond), Due: now}
				if err := store.PutOutbox(e, false); err != nil {
					b.Fatal(err)
				}
			}
			e := benchEngine(b, store)
			ctx, cancel := context.WithCancel(context.Background())
			n := 0
			var last time.Time
			done := make(chan struct{})
			b.StartTimer()
			go func() {
				defer close(done)
				e.Outbox().Run(ctx, func(_ context.Context, en engine.OutboxEntry) error {
					if en.Created.Before(last) {
						b.Errorf("sent out of creation order")
					}
					last = en.Created
					if n++; n == pending {
						cancel()
					}
					return nil
				})
			}()
			<-done
		}
	})
}

func benchEngine(b *testing.B, store engine.Store) *engine.Engine {
	b.Helper()
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		b.Fatal(err)
	}
	e := engine.New(store, reg, engine.Config{})
	if _, _, err := e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all")))); err != nil {
		b.Fatal(err)
	}
	return e
}
