package pgstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/profiles"
)

// sharedEntry is outbox entry i of a test, for registration r<i%5>.
func sharedEntry(i int, at time.Time) (engine.RegKey, engine.OutboxEntry) {
	k := engine.RegKey{Account: "juliet@capulet.lit", ID: fmt.Sprint("r", i%5)}
	id := fmt.Sprintf("n%04d", i)
	return k, engine.OutboxEntry{ID: id, Account: k.Account, Reg: k.ID, To: "pusher@push.example.com",
		Stanza: `<message id="` + id + `"/>`, Created: at, Due: at}
}

// sends counts, per notification id, the sends of every engine.
type sends struct {
	mu    sync.Mutex
	by    map[string][]string // id → the engines that sent it, in order
	at    map[string]time.Time
	count map[string]int // engine → sends
}

func newSends() *sends {
	return &sends{by: map[string][]string{}, at: map[string]time.Time{}, count: map[string]int{}}
}

func (s *sends) sender(name string) engine.Sender {
	return func(_ context.Context, e engine.OutboxEntry) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.by[e.ID] = append(s.by[e.ID], name)
		s.at[e.ID] = time.Now()
		s.count[name]++
		return nil
	}
}

func (s *sends) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.by)
}

// runEngine runs an engine's outbox on st until the test ends.
func runEngine(t *testing.T, st *Store, send engine.Sender) *engine.Engine {
	t.Helper()
	e := engine.New(st, engine.NewRegistry(), engine.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Outbox().Run(ctx, send) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// unsent counts the entries not yet recorded as sent.
func unsent(t *testing.T, st *Store) int {
	var n int
	if err := st.pool.QueryRow(context.Background(), `SELECT count(*) FROM push2_outbox WHERE sent_at IS NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTwoEnginesShareOutbox: two engines, each on its own store handle to
// one database, drain one outbox while notifications are being decided on
// both: every notification is sent exactly once, whichever engine decided
// it.
func TestTwoEnginesShareOutbox(t *testing.T) {
	dsn := server.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	got := newSends()
	runEngine(t, a, got.sender("a"))
	runEngine(t, b, got.sender("b"))
	const n = 600
	now := time.Now()
	var wg sync.WaitGroup
	for w, st := range []*Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				k, e := sharedEntry(i, now.Add(time.Duration(i)*time.Microsecond))
				if first, err := st.RecordPush(k, []string{"s:" + e.ID}, now, e); err != nil || !first {
					t.Errorf("RecordPush %s: %v %v", e.ID, first, err)
				}
			}
		}()
	}
	wg.Wait()
	waitUntil(t, 60*time.Second, "every notification sent and recorded", func() bool { return got.distinct() == n && unsent(t, a) == 0 })
	got.mu.Lock()
	defer got.mu.Unlock()
	for id, by := range got.by {
		if len(by) != 1 {
			t.Errorf("%s sent %d times (by %v)", id, len(by), by)
		}
	}
	t.Logf("sends: engine a %d, engine b %d", got.count["a"], got.count["b"])
}

// claimantEnv makes the test binary a claimant process (runClaimant): it
// opens the store of the DSN in the variable, runs an outbox whose sender
// prints the id it got and then hangs, and waits to be killed.
const claimantEnv = "PGSTORE_TEST_CLAIMANT_DSN"

func runClaimant(dsn string) {
	st, err := Open(context.Background(), dsn, Options{ClaimLease: 2 * time.Second})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	e := engine.New(st, engine.NewRegistry(), engine.Config{})
	e.Outbox().Run(context.Background(), func(_ context.Context, en engine.OutboxEntry) error {
		fmt.Println("claimed", en.ID)
		select {} // dies here, holding its claims
	})
	os.Exit(1)
}

// TestKilledClaimant: a push2d process that claimed notifications and is
// killed (SIGKILL) in the middle of sending them: another instance sends
// every one of them, after the dead one's lease (2s here) has run out and
// not before, and each once.
func TestKilledClaimant(t *testing.T) {
	dsn := server.NewDatabase(t)
	const lease = 2 * time.Second
	b, err := Open(context.Background(), dsn, Options{ClaimLease: lease})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const n = 50
	now := time.Now()
	for i := range n {
		k, e := sharedEntry(i, now.Add(time.Duration(i)*time.Millisecond))
		if _, err := b.RecordPush(k, []string{"s:" + e.ID}, now, e); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), claimantEnv+"="+dsn)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "claimed ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("claimant: %q %v", line, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	killed := time.Now()
	var held []string
	var until time.Time
	rows, err := b.pool.Query(context.Background(), `SELECT id, claimed_until FROM push2_outbox WHERE claimed_by IS NOT NULL ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id, &until); err != nil {
			t.Fatal(err)
		}
		held = append(held, id)
	}
	if rows.Err() != nil || len(held) == 0 {
		t.Fatalf("the killed claimant holds no claims (%v)", rows.Err())
	}

	got := newSends()
	runEngine(t, b, got.sender("b"))
	waitUntil(t, lease+30*time.Second, "every notification sent by the survivor", func() bool { return got.distinct() == n })
	got.mu.Lock()
	defer got.mu.Unlock()
	var last time.Time
	for _, id := range held {
		if at := got.at[id]; at.Before(until.Add(-50 * time.Millisecond)) {
			t.Errorf("%s, claimed by the dead instance until %v, was sent at %v, before its claim ran out", id, until, at)
		} else if at.After(last) {
			last = at
		}
	}
	for id, by := range got.by {
		if len(by) != 1 {
			t.Errorf("%s sent %d times", id, len(by))
		}
	}
	t.Logf("the killed instance held %d of %d; the last of them was sent %v after the kill (lease %v)",
		len(held), n, last.Sub(killed).Round(time.Millisecond), lease)
}

// TestDeliveryReportOnOtherInstance: the push service's error reply may
// reach another instance than the one that sent the notification (it holds
// the component connection): a wait error reschedules the notification,
// which is sent again (once); a permanent error drops it and counts
// against the registration.
func TestDeliveryReportOnOtherInstance(t *testing.T) {
	dsn := server.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	got := newSends()
	runEngine(t, a, got.sender("a"))
	eb := engine.New(b, engine.NewRegistry(), engine.Config{}) // b only hears reports
	now := time.Now()
	for i := range 2 {
		k, e := sharedEntry(i, now)
		if _, err := a.RecordPush(k, []string{"s:" + e.ID}, now, e); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 30*time.Second, "both sent", func() bool { return got.distinct() == 2 && unsent(t, b) == 0 })
	retry, err := eb.Outbox().DeliveryError("n0000", "pusher@push.example.com/x", "wait", "resource-constraint")
	if err != nil || !retry {
		t.Fatalf("wait error on the other instance: retry %v, %v", retry, err)
	}
	retry, err = eb.Outbox().DeliveryError("n0001", "pusher@push.example.com", "cancel", "item-not-found")
	if err != nil || retry {
		t.Fatalf("permanent error on the other instance: retry %v, %v", retry, err)
	}
	if _, ok, _ := b.GetOutbox("n0001"); ok {
		t.Error("a notification with a permanent error is still in the outbox")
	}
	if st, err := b.RegState(engine.RegKey{Account: "juliet@capulet.lit", ID: "r1"}); err != nil || st.Errors != 1 {
		t.Errorf("error state after a permanent error: %+v %v", st, err)
	}
	waitUntil(t, 30*time.Second, "the rescheduled notification sent again", func() bool {
		got.mu.Lock()
		defer got.mu.Unlock()
		return len(got.by["n0000"]) == 2
	})
	if e, ok, err := b.GetOutbox("n0000"); err != nil || !ok || e.Attempts != 2 || e.LastErr != "wait/resource-constraint" {
		t.Errorf("after the retry: %+v %v %v", e, ok, err)
	}
	if _, err := eb.Outbox().DeliveryError("n0000", "mallory@evil.example", "cancel", "item-not-found"); err == nil {
		t.Error("an error reply from another sender was taken")
	}
}

// TestRegistrationsChangedByOtherInstance: with two active instances (a
// clustered server), a registration enabled, then disabled, through one
// engine is seen at once by the other's evaluations: no stale cache.
func TestRegistrationsChangedByOtherInstance(t *testing.T) {
	dsn := server.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	mk := func(st *Store) *engine.Engine {
		reg := engine.NewRegistry()
		if err := reg.Register(profiles.Builtin()); err != nil {
			t.Fatal(err)
		}
		return engine.New(st, reg, engine.Config{})
	}
	ea, eb := mk(a), mk(b)
	ctx := context.Background()
	const acct = "juliet@capulet.lit"
	pushed := func(e *engine.Engine, id string) bool {
		st := stanza.MustParse(`<message xmlns="jabber:client" from="romeo@montague.lit/o" to="` + acct + `" type="chat" id="` + id + `"><body>hi</body></message>`)
		v, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: acct, Trigger: engine.TriggerOffline}})
		if err != nil {
			t.Fatal(err)
		}
		return len(v.Notifications) > 0
	}
	if pushed(eb, "m1") {
		t.Fatal("pushed without a registration")
	}
	el := stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>c</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)
	if _, _, err := ea.Enable(ctx, acct, "phone", el); err != nil {
		t.Fatal(err)
	}
	if !pushed(eb, "m2") {
		t.Error("the other instance does not see a registration enabled on the first")
	}
	if _, err := a.DeleteRegistration(engine.RegKey{Account: acct, ID: "phone"}); err != nil {
		t.Fatal(err)
	}
	if pushed(eb, "m3") {
		t.Error("the other instance still pushes for a registration removed on the first")
	}
}

// TestTwoActiveEnginesEvaluate: two active instances (a clustered server,
// each node with its own push2d) on one database, driven through the
// engine: each evaluates its own share of 2,000 offline messages for 20
// accounts, and a quarter of the events reach both (a node replaying an
// event the other already handled). Both outboxes run all along. Every
// message gets one notification (the shared dedupe marks keep the second
// evaluation from making another) and no notification is sent twice,
// counting the sends of both.
func TestTwoActiveEnginesEvaluate(t *testing.T) {
	dsn := server.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	defer a.Close()
	defer b.Close()
	got := newSends()
	mk := func(st *Store, name string) *engine.Engine {
		reg := engine.NewRegistry()
		if err := reg.Register(profiles.Builtin()); err != nil {
			t.Fatal(err)
		}
		e := engine.New(st, reg, engine.Config{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); e.Outbox().Run(ctx, got.sender(name)) }()
		t.Cleanup(func() { cancel(); <-done })
		return e
	}
	ea, eb := mk(a, "a"), mk(b, "b")
	ctx := context.Background()
	const accounts, n = 20, 2000
	el := stanza.MustParse(`<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>c</client><match profile="urn:xmpp:push2:match:all"><send xmlns="urn:xmpp:push2:send:notify-only:0"/></match></enable>`)
	for i := range accounts {
		if _, _, err := []*engine.Engine{ea, eb}[i%2].Enable(ctx, fmt.Sprintf("u%02d@capulet.lit", i), "phone", el); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	made := 0 // notifications the evaluations made, over both engines
	eval := func(e *engine.Engine, i int) {
		acct := fmt.Sprintf("u%02d@capulet.lit", i%accounts)
		st := stanza.MustParse(fmt.Sprintf(`<message xmlns="jabber:client" from="romeo@montague.lit/o" to="%s" type="chat" id="m%04d"><body>message %d</body></message>`, acct, i, i))
		v, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: acct, Trigger: engine.TriggerOffline}})
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		made += len(v.Notifications)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				own, other := ea, eb
				if i%2 == 1 {
					own, other = eb, ea
				}
				eval(own, i)
				if (i/4)%4 == 0 { // a quarter of them: the other node too
					eval(other, i)
				}
			}
		}()
	}
	wg.Wait()
	if made != n {
		t.Errorf("the evaluations made %d notifications for %d messages (each replayed one must make none)", made, n)
	}
	waitUntil(t, 90*time.Second, "every notification sent and recorded", func() bool { return got.distinct() >= n && unsent(t, a) == 0 })
	got.mu.Lock()
	defer got.mu.Unlock()
	twice := 0
	for id, by := range got.by {
		if len(by) != 1 {
			twice++
			if twice <= 5 {
				t.Errorf("%s sent %d times (by %v)", id, len(by), by)
			}
		}
	}
	if len(got.by) != n || twice != 0 {
		t.Errorf("%d distinct notifications sent for %d messages, %d sent more than once", len(got.by), n, twice)
	}
	t.Logf("%d messages (%d evaluated on both engines): sends by engine a %d, by engine b %d", n, n/4, got.count["a"], got.count["b"])
}
