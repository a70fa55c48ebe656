package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// pausingStore holds RecordPush after its write until release is closed.
type pausingStore struct {
	*memstore.Store
	stored, release chan struct{}
}

func (s *pausingStore) RecordPush(k engine.RegKey, keys []string, at time.Time, entry engine.OutboxEntry) (bool, error) {
	first, err := s.Store.RecordPush(k, keys, at, entry)
	close(s.stored)
	<-s.release
	return first, err
}

// TestOutboxLoadRacesAdd: a notification stored just before Outbox.Run
// starts is loaded by Run from the store, can be in flight at once, and is
// then handed to the outbox by the engine (which stores first, then adds).
// It is sent once. (Before, the second copy went out too: bridgeproto's
// TestDeliveryReports failed on a loaded CI machine with "a report was
// answered" by that second push.)
func TestOutboxLoadRacesAdd(t *testing.T) {
	store := &pausingStore{Store: memstore.New(), stored: make(chan struct{}), release: make(chan struct{})}
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.Builtin()); err != nil {
		t.Fatal(err)
	}
	e := engine.New(store, reg, engine.Config{})
	ctx := context.Background()
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all")))); err != nil {
		t.Fatal(err)
	}
	evaluated := make(chan struct{})
	go func() {
		defer close(evaluated)
		e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(msgBody), Context: engine.Context{Account: account, Trigger: engine.TriggerOffline}})
	}()
	<-store.stored // the entry is in the store, not yet in the outbox

	var mu sync.Mutex
	sends := 0
	inFlight, unblock := make(chan struct{}), make(chan struct{})
	send := func(context.Context, engine.OutboxEntry) error {
		mu.Lock()
		sends++
		first := sends == 1
		mu.Unlock()
		if first {
			close(inFlight)
			<-unblock
		}
		return nil
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.Outbox().Run(runCtx, send); close(done) }()
	<-inFlight           // Run loaded the entry and is sending it
	close(store.release) // the engine adds it
	<-evaluated
	close(unblock)
	// Rounds follow each other within milliseconds while something is
	// ready: a second copy would go out during this wait.
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if sends != 1 {
		t.Fatalf("sent %d times, want once", sends)
	}
}
