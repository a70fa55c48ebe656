package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// sink is a Sender that records what it was handed.
type sink struct {
	mu   sync.Mutex
	sent []engine.OutboxEntry
	down bool
}

func (s *sink) send(_ context.Context, e engine.OutboxEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("not connected")
	}
	s.sent = append(s.sent, e)
	return nil
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// stepOutbox runs the outbox until the sink has want entries (or fails).
func runUntil(t *testing.T, o *engine.Outbox, s *sink, want int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx, s.send); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.count() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if got := s.count(); got != want {
		t.Fatalf("sent %d, want %d", got, want)
	}
}

func pushOne(t *testing.T, e *engine.Engine, id string) *engine.Notification {
	t.Helper()
	res, err := e.Evaluate(context.Background(), &engine.Event{
		Stanza:  stanza.MustParse(strings.Replace(msgBody, `id="s1"`, `id="`+id+`"`, 1)),
		Context: engine.Context{Account: account, Trigger: engine.TriggerOffline},
	})
	if err != nil || len(res.Notifications) != 1 {
		t.Fatalf("evaluate: %v %+v", err, res)
	}
	return res.Notifications[0]
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		typ, cond string
		want      bool
	}{
		{"wait", "internal-server-error", true},
		{"wait", "resource-constraint", true},
		{"cancel", "resource-constraint", true},   // transient condition, inconsistent type
		{"cancel", "remote-server-timeout", true}, // likewise
		{"wait", "item-not-found", false},         // permanent condition, inconsistent type
		{"wait", "not-authorized", false},
		{"cancel", "item-not-found", false},
		{"modify", "bad-request", false},
		{"auth", "forbidden", false},
		{"cancel", "internal-server-error", false},
	} {
		if got := engine.Retryable(tc.typ, tc.cond); got != tc.want {
			t.Errorf("Retryable(%s, %s) = %v", tc.typ, tc.cond, got)
		}
	}
}

func TestOutboxRetryThenDeliver(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{Retry: engine.RetryPolicy{BaseDelay: time.Second, MaxAttempts: 3}})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "r1")
	o := e.Outbox()
	var events []engine.OutboxEvent
	o.Observe = func(ev engine.OutboxEvent, _ engine.OutboxEntry, _ string) { events = append(events, ev) }
	s := &sink{}
	runUntil(t, o, s, 1)
	if s.sent[0].ID != n.ID || !strings.Contains(s.sent[0].Stanza, "<notification") {
		t.Fatalf("sent %+v", s.sent[0])
	}
	// wait → rescheduled within [BaseDelay/2, BaseDelay].
	if !o.DeliveryError(n.ID, "wait", "resource-constraint") {
		t.Fatal("wait error not retried")
	}
	*now = now.Add(time.Second)
	runUntil(t, o, s, 2)
	if s.sent[1].ID != n.ID || s.sent[1].Attempts != 2 {
		t.Errorf("retry: %+v", s.sent[1])
	}
	// After the error window without an error it is delivered and gone.
	*now = now.Add(2 * time.Minute)
	runUntil(t, o, s, 2)
	if o.Len() != 0 {
		t.Errorf("outbox still holds %d", o.Len())
	}
	if strings.TrimSpace(fmtEvents(events)) != "sent retry sent delivered" {
		t.Errorf("events: %v", events)
	}
}

func fmtEvents(evs []engine.OutboxEvent) string {
	var b strings.Builder
	for _, e := range evs {
		b.WriteString(string(e) + " ")
	}
	return b.String()
}

func TestOutboxCancelNotRetried(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "c1")
	s := &sink{}
	runUntil(t, e.Outbox(), s, 1)
	if e.Outbox().DeliveryError(n.ID, "cancel", "item-not-found") {
		t.Fatal("cancel error retried")
	}
	if e.Outbox().Len() != 0 {
		t.Error("dropped notification still in the outbox")
	}
	runUntil(t, e.Outbox(), s, 1) // nothing more is sent
}

func TestOutboxRetriesExhausted(t *testing.T) {
	e, store, now := newEngine(t, engine.Config{Retry: engine.RetryPolicy{BaseDelay: time.Second, MaxAttempts: 3}})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "x1")
	s := &sink{}
	for i := 1; i <= 3; i++ {
		runUntil(t, e.Outbox(), s, i)
		retried := e.Outbox().DeliveryError(n.ID, "wait", "internal-server-error")
		if retried != (i < 3) {
			t.Fatalf("attempt %d: retried = %v", i, retried)
		}
		*now = now.Add(10 * time.Second)
	}
	st, _ := store.RegState(engine.RegKey{Account: account, ID: "phone"})
	if st.Errors != 1 || st.LastCondition != "internal-server-error" {
		t.Errorf("error state after exhausting retries: %+v", st)
	}
}

func TestOutboxDisablesAfterMaxErrors(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{Retry: engine.RetryPolicy{MaxErrors: 3}})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	e.Enable(ctx, account, "tablet", stanza.MustParse(enableXML(matchXML("all"))))
	s := &sink{}
	var disabled []string
	e.Outbox().Observe = func(ev engine.OutboxEvent, en engine.OutboxEntry, _ string) {
		if ev == engine.OutboxDisabled {
			disabled = append(disabled, en.Reg)
		}
	}
	sent := 0
	for i := 0; i < 3; i++ {
		res, _ := e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(strings.Replace(msgBody, `id="s1"`, `id="d`+string(rune('a'+i))+`"`, 1)), Context: engine.Context{Account: account}})
		sent += len(res.Notifications)
		runUntil(t, e.Outbox(), s, sent)
		for _, n := range res.Notifications {
			if n.Reg.ID == "phone" {
				e.Outbox().DeliveryError(n.ID, "cancel", "item-not-found")
			}
		}
	}
	if len(disabled) != 1 || disabled[0] != "phone" {
		t.Fatalf("disabled %v", disabled)
	}
	regs, _ := e.Registrations(context.Background(), account)
	if len(regs) != 1 || regs[0].ID != "tablet" {
		t.Errorf("registrations after disable: %+v", regs)
	}
	recs, _ := e.Disabled(account)
	if len(recs) != 1 || recs[0].Errors != 3 || recs[0].LastCondition != "item-not-found" || !strings.Contains(recs[0].Reason, "3 notifications in a row") {
		t.Errorf("disabled record: %+v", recs)
	}
	// Enabling again starts over.
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	if recs, _ := e.Disabled(account); len(recs) != 0 {
		t.Errorf("record kept after re-enable: %+v", recs)
	}
}

func TestOutboxDisablesAfterFailingFor72h(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	s := &sink{}
	for i, step := range []time.Duration{0, 40 * time.Hour, 33 * time.Hour} {
		*now = now.Add(step)
		n := pushOne(t, e, "t"+string(rune('a'+i)))
		runUntil(t, e.Outbox(), s, i+1)
		e.Outbox().DeliveryError(n.ID, "cancel", "service-unavailable")
	}
	if recs, _ := e.Disabled(account); len(recs) != 1 || !strings.Contains(recs[0].Reason, "failed for 73h") {
		t.Errorf("disabled: %+v", recs)
	}
}

func TestOutboxDeliveryResetsErrors(t *testing.T) {
	e, store, now := newEngine(t, engine.Config{})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	s := &sink{}
	n := pushOne(t, e, "e1")
	runUntil(t, e.Outbox(), s, 1)
	e.Outbox().DeliveryError(n.ID, "cancel", "item-not-found")
	pushOne(t, e, "e2")
	runUntil(t, e.Outbox(), s, 2)
	*now = now.Add(2 * time.Minute)
	runUntil(t, e.Outbox(), s, 2)
	if st, _ := store.RegState(engine.RegKey{Account: account, ID: "phone"}); st.Errors != 0 {
		t.Errorf("errors after a delivery: %+v", st)
	}
}

// TestOutboxSurvivesRestart: an accepted notification is in the store; a new
// engine on the same directory sends it.
func TestOutboxSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	open := func() (*engine.Engine, *pebblestore.Store) {
		st, err := pebblestore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		reg := engine.NewRegistry()
		reg.Register(profiles.Builtin())
		return engine.New(st, reg, engine.Config{}), st
	}
	e, st := open()
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "p1")
	st.Close() // "crash" before anything was sent
	e, st = open()
	defer st.Close()
	s := &sink{down: true}
	if e.Outbox().Len() != 1 {
		t.Fatalf("outbox after restart: %d", e.Outbox().Len())
	}
	s.down = false
	runUntil(t, e.Outbox(), s, 1)
	if s.sent[0].ID != n.ID {
		t.Errorf("sent %+v", s.sent[0])
	}
}
