package pgstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// TestSharedOutboxSendErrors: in the shared outbox (several push2d on one
// database) too, a notification the Sender cannot hand over does not hold
// up the rest of its batch: an undeliverable one (engine.ErrUndeliverable)
// is dropped, one whose destination is not ready (engine.ErrNotReady) is
// released and sent once it is, and the one behind both goes out at once.
func TestSharedOutboxSendErrors(t *testing.T) {
	s := open(t, server.NewDatabase(t))
	t.Cleanup(func() { s.Close() })
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	e := engine.New(s, reg, engine.Config{Clock: clock})
	const account = "juliet@capulet.lit"
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>https://push.example.com/x</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, id := range []string{"u1", "w1", "g1"} { // created, and claimed, in this order
		res, err := e.Evaluate(ctx, &engine.Event{
			Stanza:  stanza.MustParse(`<message xmlns="jabber:client" from="romeo@montague.lit/orchard" to="juliet@capulet.lit" type="chat" id="` + id + `"><body>Art thou not Romeo?</body></message>`),
			Context: engine.Context{Account: account, Trigger: engine.TriggerOffline},
		})
		if err != nil || len(res.Notifications) != 1 {
			t.Fatalf("evaluate %s: %v %+v", id, err, res)
		}
		ids = append(ids, res.Notifications[0].ID)
		clockMu.Lock()
		now = now.Add(time.Millisecond)
		clockMu.Unlock()
	}
	bad, waiting, good := ids[0], ids[1], ids[2]
	o := e.Outbox()
	var mu sync.Mutex
	var sent, dropped []string
	notReady, ready := 0, false
	o.Observe = func(ev engine.OutboxEvent, en engine.OutboxEntry, detail string) {
		if ev == engine.OutboxDropped {
			mu.Lock()
			dropped = append(dropped, en.ID+" "+detail)
			mu.Unlock()
		}
	}
	send := func(_ context.Context, en engine.OutboxEntry) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case en.ID == bad:
			return fmt.Errorf("%w: not XML", engine.ErrUndeliverable)
		case en.ID == waiting && !ready:
			notReady++
			if notReady == 2 {
				ready = true // ready the next time
			}
			return fmt.Errorf("%w: its bridge has not announced itself", engine.ErrNotReady)
		}
		sent = append(sent, en.ID)
		return nil
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { o.Run(rctx, send); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(sent)
		mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(sent, " ") != good+" "+waiting {
		t.Errorf("sent %v, want [%s %s]", sent, good, waiting)
	}
	if len(dropped) != 1 || dropped[0] != bad+" undeliverable" {
		t.Errorf("dropped %v, want [%s undeliverable]", dropped, bad)
	}
	if _, ok, err := s.GetOutbox(bad); ok || err != nil {
		t.Errorf("the undeliverable notification is still stored (%v)", err)
	}
}
