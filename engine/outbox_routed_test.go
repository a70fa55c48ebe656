package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// TestOutboxAwaitsRouting: with AwaitRouted, a notification handed over
// counts as sent only on Routed; one not confirmed when the connection is
// lost (Unrouted) is sent again, with the same id and without counting an
// attempt, and is delivered after its error window only once confirmed.
func TestOutboxAwaitsRouting(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "r1")
	o := e.Outbox()
	o.AwaitRouted = func(engine.OutboxEntry) bool { return true }
	var events []engine.OutboxEvent
	o.Observe = func(ev engine.OutboxEvent, _ engine.OutboxEntry, _ string) { events = append(events, ev) }
	s := &sink{}
	runUntil(t, o, s, 1)
	if len(events) != 0 {
		t.Fatalf("events before any confirmation: %v", events)
	}
	// Lost with the connection: sent again, same id, attempt not counted.
	o.Unrouted()
	runUntil(t, o, s, 2)
	if s.sent[1].ID != n.ID || s.sent[1].Attempts != 1 {
		t.Fatalf("resent %+v", s.sent[1])
	}
	// Never confirmed: not delivered, however long it waits short of the
	// route timeout.
	*now = now.Add(engine.RouteTimeout / 2)
	runUntil(t, o, s, 2)
	if o.Len() != 1 || len(events) != 0 {
		t.Fatalf("unconfirmed: outbox %d, events %v", o.Len(), events)
	}
	o.Routed(n.ID)
	o.Routed("unknown-id") // ignored
	*now = now.Add(2 * time.Minute)
	runUntil(t, o, s, 2)
	if o.Len() != 0 || fmtEvents(events) != "sent delivered " && fmtEvents(events) != "sent delivered" {
		t.Errorf("after the confirmation: outbox %d, events %q", o.Len(), fmtEvents(events))
	}
}

// TestOutboxRouteTimeout: a notification whose confirmation never comes
// is sent again after RouteTimeout.
func TestOutboxRouteTimeout(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "r1")
	o := e.Outbox()
	o.AwaitRouted = func(engine.OutboxEntry) bool { return true }
	s := &sink{}
	runUntil(t, o, s, 1)
	*now = now.Add(engine.RouteTimeout + time.Second)
	runUntil(t, o, s, 2)
	if s.sent[1].ID != n.ID {
		t.Errorf("resent %+v", s.sent[1])
	}
}

// TestOutboxRoutedAll: a batch of confirmations files every confirmed
// notification as sent, in memory and in the store (one write with a
// store that batches), and ignores ids that wait for none.
func TestOutboxRoutedAll(t *testing.T) {
	e, store, _ := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	var ids []string
	for _, id := range []string{"r1", "r2", "r3"} {
		ids = append(ids, pushOne(t, e, id).ID)
	}
	o := e.Outbox()
	o.AwaitRouted = func(engine.OutboxEntry) bool { return true }
	var events []engine.OutboxEvent
	o.Observe = func(ev engine.OutboxEvent, _ engine.OutboxEntry, _ string) { events = append(events, ev) }
	s := &sink{}
	runUntil(t, o, s, 3)
	o.RoutedAll(append([]string{"unknown-id"}, ids[:2]...))
	if fmtEvents(events) != "sent sent " && fmtEvents(events) != "sent sent" {
		t.Errorf("events %q", fmtEvents(events))
	}
	sent := map[string]bool{}
	if err := store.ForEachOutbox(func(en engine.OutboxEntry) error {
		sent[en.ID] = !en.SentAt.IsZero()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !sent[ids[0]] || !sent[ids[1]] || sent[ids[2]] || len(sent) != 3 {
		t.Errorf("recorded as sent in the store: %v (ids %v)", sent, ids)
	}
}
