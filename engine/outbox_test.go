package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/memstore"
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
	runUntilWith(t, o, s.send, s, want)
}

// runUntilWith is runUntil with the outbox handing entries to send (which
// passes those it takes on to s).
func runUntilWith(t *testing.T, o *engine.Outbox, send engine.Sender, s *sink, want int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx, send); close(done) }()
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
	if !serviceError(t, o, n, "wait", "resource-constraint") {
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
	if serviceError(t, e.Outbox(), n, "cancel", "item-not-found") {
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
		retried := serviceError(t, e.Outbox(), n, "wait", "internal-server-error")
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
				serviceError(t, e.Outbox(), n, "cancel", "item-not-found")
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

// TestOutboxGoneDisablesAtOnce: a gone answer (a Web Push subscription
// that expired, 410) disables the registration on the first error.
func TestOutboxGoneDisablesAtOnce(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{Retry: engine.RetryPolicy{MaxErrors: 3}})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "g1")
	runUntil(t, e.Outbox(), &sink{}, 1)
	if serviceError(t, e.Outbox(), n, "cancel", "gone") {
		t.Fatal("gone retried")
	}
	recs, _ := e.Disabled(account)
	if len(recs) != 1 || recs[0].Errors != 1 || recs[0].LastCondition != "gone" || !strings.Contains(recs[0].Reason, "gone") {
		t.Errorf("disabled record: %+v", recs)
	}
	if regs, _ := e.Registrations(context.Background(), account); len(regs) != 0 {
		t.Errorf("still registered: %+v", regs)
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
		serviceError(t, e.Outbox(), n, "cancel", "service-unavailable")
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
	serviceError(t, e.Outbox(), n, "cancel", "item-not-found")
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

// serviceError reports an error from the notification's own push service,
// as the bridge passes it on, and returns whether it will be retried.
func serviceError(t *testing.T, o *engine.Outbox, n *engine.Notification, typ, cond string) bool {
	t.Helper()
	retry, err := o.DeliveryError(n.ID, n.To+"/svc", typ, cond)
	if err != nil {
		t.Fatalf("DeliveryError(%s from %s): %v", n.ID, n.To, err)
	}
	return retry
}

// TestOutboxReportsOnlyFromTheService: a delivery error or a positive report
// counts only when it comes from the service the notification was sent to
// (bare JID). Forged errors from anyone else, as many as the limit that
// would disable the registration and more, change nothing.
func TestOutboxReportsOnlyFromTheService(t *testing.T) {
	e, store, _ := newEngine(t, engine.Config{Retry: engine.RetryPolicy{MaxErrors: 3}})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	n := pushOne(t, e, "f1")
	s := &sink{}
	runUntil(t, e.Outbox(), s, 1)
	o := e.Outbox()
	for _, from := range []string{
		"mallory@evil.example",
		"mallory@evil.example/pusher",
		"push.example.com",             // the service's domain is not the service
		"pusher@push.example.com.evil", // a lookalike
		"other@push.example.com",       // another account at the service's server
		"",                             // no sender
		"not a jid@@",                  // unparseable
		"capulet.lit",                  // the user's own server
		"juliet@capulet.lit/balcony",   // the user
	} {
		for i := 0; i < 16; i++ {
			if retry, err := o.DeliveryError(n.ID, from, "cancel", "item-not-found"); !errors.Is(err, engine.ErrNotFromService) || retry {
				t.Fatalf("error from %q: retry=%v err=%v, want ErrNotFromService", from, retry, err)
			}
		}
		if err := o.Confirm(n.ID, from); !errors.Is(err, engine.ErrNotFromService) {
			t.Fatalf("confirm from %q: %v", from, err)
		}
	}
	if st, _ := store.RegState(engine.RegKey{Account: account, ID: "phone"}); st.Errors != 0 {
		t.Errorf("forged errors counted: %+v", st)
	}
	if regs, _ := e.Registrations(ctx, account); len(regs) != 1 {
		t.Fatalf("registration gone after forged errors: %+v", regs)
	}
	if o.Len() != 1 {
		t.Fatalf("outbox holds %d, want the notification still waiting", o.Len())
	}
	if _, err := o.DeliveryError("00000000-0000-4000-8000-000000000000", n.To, "cancel", "item-not-found"); !errors.Is(err, engine.ErrUnknownNotification) {
		t.Errorf("error for an unknown id: %v", err)
	}
	if err := o.Confirm("00000000-0000-4000-8000-000000000000", n.To); !errors.Is(err, engine.ErrUnknownNotification) {
		t.Errorf("confirm for an unknown id: %v", err)
	}
	// The service itself, from its bare JID or any resource, and with a
	// differently cased domain, is heard.
	if err := o.Confirm(n.ID, "pusher@PUSH.example.com/r1"); err != nil {
		t.Fatalf("confirm from the service: %v", err)
	}
	if o.Len() != 0 {
		t.Errorf("confirmed notification still in the outbox")
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestNotificationIDs: every notification gets its own random UUID (v4),
// also for the same stanza pushed to another registration, and pings; a
// retry of a stored notification keeps it.
func TestNotificationIDs(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{Retry: engine.RetryPolicy{BaseDelay: time.Second}})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	e.Enable(ctx, account, "tablet", stanza.MustParse(strings.Replace(enableXML(matchXML("all")), "adlfkjadafdasf", "tablet", 1)))
	seen := map[string]bool{}
	var first *engine.Notification
	for i := 0; i < 50; i++ {
		res, err := e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(strings.Replace(msgBody, `id="s1"`, fmt.Sprintf(`id="u%d"`, i), 1)), Context: engine.Context{Account: account}})
		if err != nil || len(res.Notifications) != 2 {
			t.Fatalf("evaluate: %v %+v", err, res)
		}
		for _, n := range res.Notifications {
			if !uuidV4.MatchString(n.ID) {
				t.Fatalf("id %q is not a version 4 UUID", n.ID)
			}
			if got := n.Stanza.AttrValue("id"); got != n.ID {
				t.Fatalf("stanza id %q, notification id %q", got, n.ID)
			}
			if seen[n.ID] {
				t.Fatalf("id %q used twice", n.ID)
			}
			seen[n.ID] = true
			if first == nil {
				first = n
			}
		}
	}
	pings, err := e.Ping(ctx, account, nil)
	if err != nil || len(pings) != 2 {
		t.Fatalf("ping: %v %+v", err, pings)
	}
	for _, n := range pings {
		if !uuidV4.MatchString(n.ID) || seen[n.ID] {
			t.Errorf("ping id %q", n.ID)
		}
	}
	// A retry sends the stored notification again, with its id.
	s := &sink{}
	runUntil(t, e.Outbox(), s, 102)
	if !serviceError(t, e.Outbox(), first, "wait", "resource-constraint") {
		t.Fatal("not retried")
	}
	*now = now.Add(time.Second)
	runUntil(t, e.Outbox(), s, 103)
	if last := s.sent[102]; last.ID != first.ID || !strings.Contains(last.Stanza, `id="`+first.ID+`"`) {
		t.Errorf("retry %+v, want id %s", last, first.ID)
	}
}

// TestOutboxRunAppliesDedupeRetention: the outbox forgets dedupe marks past
// Config.DedupeRetention, so the same stanza reported again after that is
// pushed again; within the retention it is a duplicate.
func TestOutboxRunAppliesDedupeRetention(t *testing.T) {
	e, _, now := newEngine(t, engine.Config{DedupeRetention: 7 * 24 * time.Hour})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	s := &sink{}
	pushOne(t, e, "k1")
	runUntil(t, e.Outbox(), s, 1)
	again := func() engine.OutcomeCode {
		res, err := e.Evaluate(ctx, &engine.Event{
			Stanza:  stanza.MustParse(strings.Replace(msgBody, `id="s1"`, `id="k1"`, 1)),
			Context: engine.Context{Account: account, Trigger: engine.TriggerOffline},
		})
		if err != nil || len(res.Outcomes) != 1 {
			t.Fatalf("evaluate: %v %+v", err, res)
		}
		return res.Outcomes[0].Code
	}
	*now = now.Add(6 * 24 * time.Hour)
	runUntil(t, e.Outbox(), s, 1)
	if got := again(); got != engine.OutcomeDuplicate {
		t.Fatalf("within the retention: %s, want duplicate", got)
	}
	*now = now.Add(2 * 24 * time.Hour) // 8 days after the push
	runUntil(t, e.Outbox(), s, 1)
	if got := again(); got != engine.OutcomePushed {
		t.Errorf("past the retention: %s, want pushed", got)
	}
}

// faultyStore fails the error accounting calls on demand.
type faultyStore struct {
	engine.Store
	failRead, failWrite bool
}

var errDisk = errors.New("disk on fire")

func (f *faultyStore) RegState(k engine.RegKey) (engine.RegState, error) {
	if f.failRead {
		return engine.RegState{}, errDisk
	}
	return f.Store.RegState(k)
}

func (f *faultyStore) PutRegState(k engine.RegKey, st engine.RegState) error {
	if f.failWrite {
		return errDisk
	}
	return f.Store.PutRegState(k, st)
}

// TestOutboxStoreErrorsReported: a failing read or write of a registration's
// error accounting is logged with the error, never silently dropped.
func TestOutboxStoreErrorsReported(t *testing.T) {
	store := &faultyStore{Store: memstore.New()}
	var logs strings.Builder
	var mu sync.Mutex
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	reg := engine.NewRegistry()
	reg.Register(profiles.Builtin())
	e := engine.New(store, reg, engine.Config{Clock: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(&lockedWriter{&mu, &logs}, nil))})
	ctx := context.Background()
	e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	k := engine.RegKey{Account: account, ID: "phone"}
	s := &sink{}
	wantLog := func(msg string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(logs.String(), `msg="`+msg+`"`) || !strings.Contains(logs.String(), errDisk.Error()) {
			t.Errorf("no %q log line with the error in:\n%s", msg, logs.String())
		}
		logs.Reset()
	}

	store.failWrite = true
	n := pushOne(t, e, "f1")
	runUntil(t, e.Outbox(), s, 1)
	serviceError(t, e.Outbox(), n, "cancel", "item-not-found")
	wantLog("outbox: write error state")

	store.failWrite = false
	store.PutRegState(k, engine.RegState{Errors: 1, FirstError: now})
	store.failWrite = true
	pushOne(t, e, "f2")
	runUntil(t, e.Outbox(), s, 2)
	now = now.Add(2 * time.Minute)
	runUntil(t, e.Outbox(), s, 2)
	wantLog("outbox: reset error state")

	store.failRead = true
	pushOne(t, e, "f3")
	runUntil(t, e.Outbox(), s, 3)
	now = now.Add(2 * time.Minute)
	runUntil(t, e.Outbox(), s, 3)
	wantLog("outbox: read error state")
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestOutboxSendErrors: a notification the Sender cannot hand over does not
// hold up the ones behind it. An undeliverable one (ErrUndeliverable: its
// stored form is damaged) is dropped, where it used to be tried again first
// in line every 200 ms, forever; one whose destination is not ready
// (ErrNotReady) waits, with a delay that grows, while the next are sent,
// and is sent once its destination is ready.
func TestOutboxSendErrors(t *testing.T) {
	e, store, now := newEngine(t, engine.Config{})
	e.Enable(context.Background(), account, "phone", stanza.MustParse(enableXML(matchXML("all"))))
	bad := pushOne(t, e, "u1")
	*now = now.Add(time.Millisecond) // sent in this order: created first, sent first
	waiting := pushOne(t, e, "w1")
	*now = now.Add(time.Millisecond)
	good := pushOne(t, e, "g1")
	o := e.Outbox()
	var mu sync.Mutex
	var dropped []string
	notReady, ready := 0, false
	o.Observe = func(ev engine.OutboxEvent, en engine.OutboxEntry, detail string) {
		if ev == engine.OutboxDropped {
			mu.Lock()
			dropped = append(dropped, en.ID+" "+detail)
			mu.Unlock()
		}
	}
	s := &sink{}
	send := func(ctx context.Context, en engine.OutboxEntry) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case en.ID == bad.ID:
			return fmt.Errorf("%w: not XML", engine.ErrUndeliverable)
		case en.ID == waiting.ID && !ready:
			notReady++
			return fmt.Errorf("%w: its bridge has not announced itself", engine.ErrNotReady)
		}
		return s.send(ctx, en)
	}
	run := func(want int) { t.Helper(); runUntilWith(t, o, send, s, want) }
	run(1)
	if s.sent[0].ID != good.ID {
		t.Fatalf("sent %s first, want %s", s.sent[0].ID, good.ID)
	}
	mu.Lock()
	if len(dropped) != 1 || dropped[0] != bad.ID+" undeliverable" {
		t.Errorf("dropped %v, want [%s undeliverable]", dropped, bad.ID)
	}
	if notReady != 1 { // the clock stands still: not due again yet
		t.Errorf("the waiting notification was tried %d times, want 1", notReady)
	}
	ready = true
	mu.Unlock()
	if err := store.ForEachOutbox(func(en engine.OutboxEntry) error {
		if en.ID == bad.ID {
			return errors.New("still stored")
		}
		return nil
	}); err != nil {
		t.Errorf("the undeliverable notification: %v", err)
	}
	if o.Len() != 2 {
		t.Errorf("outbox holds %d, want 2 (the waiting one, and the sent one in its error window)", o.Len())
	}
	*now = now.Add(engine.NotReadyDelay)
	run(2)
	if s.sent[1].ID != waiting.ID || s.sent[1].Attempts != 1 {
		t.Errorf("then sent %s (attempt %d), want %s (attempt 1)", s.sent[1].ID, s.sent[1].Attempts, waiting.ID)
	}
}
