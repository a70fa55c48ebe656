package profiles_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
	"github.com/push2/push2/profiles/webpush"
)

// TestResendRenewsExpiredToken: a notification that waited in the outbox
// past its VAPID token's exp is sent again with a token signed at the time
// of the resend (engine.TokenRefresher); one resent while its token is
// still good keeps it.
func TestResendRenewsExpiredToken(t *testing.T) {
	id := newIdentity(t)
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	reg := engine.NewRegistry()
	if err := reg.Register(profiles.BuiltinWith(profiles.Options{Encrypted: profiles.EncryptedOptions{Clock: clock, Signer: webpush.NewSigner(0)}})); err != nil {
		t.Fatal(err)
	}
	e := engine.New(store, reg, engine.Config{Clock: clock, Retry: engine.RetryPolicy{MaxAge: 48 * time.Hour, BaseDelay: time.Second, MaxDelay: time.Second}})
	enable(t, e, sendXML(id, true, ""))
	_, n := evaluate(t, e, archivedMessage, engine.Context{Now: clock()})
	if n == nil {
		t.Fatal("no notification")
	}
	var sent []engine.OutboxEntry
	var smu sync.Mutex
	sendOnce := func(want int) string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			e.Outbox().Run(ctx, func(_ context.Context, en engine.OutboxEntry) error {
				smu.Lock()
				sent = append(sent, en)
				smu.Unlock()
				return nil
			})
			close(done)
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			smu.Lock()
			got := len(sent)
			smu.Unlock()
			if got >= want || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		<-done
		if len(sent) != want {
			t.Fatalf("sent %d, want %d", len(sent), want)
		}
		msg := stanza.MustParse(sent[want-1].Stanza)
		return msg.Child(stanza.NSPush2, "notification").ChildText(stanza.NSPush2, "jwt")
	}
	pub, _ := webpush.DecodeBase64(id.VAPIDPublic)
	first := sendOnce(1)
	if _, err := webpush.VerifyAt(first, pub, clock()); err != nil {
		t.Fatalf("first token: %v", err)
	}
	if retry, err := e.Outbox().DeliveryError(n.ID, n.To, "wait", "internal-server-error"); err != nil || !retry {
		t.Fatalf("DeliveryError: %v %v", retry, err)
	}
	advance(13 * time.Hour) // past the 12-hour exp
	second := sendOnce(2)
	if _, err := webpush.VerifyAt(first, pub, clock()); err == nil {
		t.Fatal("the first token should have expired by now")
	}
	if _, err := webpush.VerifyAt(second, pub, clock()); err != nil {
		t.Errorf("the resent notification's token: %v", err)
	}
	if len(second) != len(first) {
		t.Errorf("token length %d, was %d", len(second), len(first))
	}
	payload := func(i int) string {
		return stanza.MustParse(sent[i].Stanza).Child(stanza.NSPush2, "notification").Child(stanza.NSRFC8291, "encrypted").ChildText(stanza.NSRFC8291, "payload")
	}
	if payload(0) != payload(1) {
		t.Error("the payload changed on resend")
	}
	if retry, err := e.Outbox().DeliveryError(n.ID, n.To, "wait", "internal-server-error"); err != nil || !retry {
		t.Fatalf("DeliveryError: %v %v", retry, err)
	}
	advance(time.Minute)
	if third := sendOnce(3); third != second {
		t.Error("a token with hours left was replaced")
	}
}
