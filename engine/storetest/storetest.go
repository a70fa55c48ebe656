// Package storetest is the conformance suite of engine.Store: every store
// implementation runs it from its own tests, so that the engine can rely on
// the interface's promises whatever holds the data (Pebble, memory, a
// database shared by several push2d instances).
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) engine.Store { return open(t) },
//			storetest.Reopen(func(t *testing.T, s engine.Store) engine.Store { … }))
//	}
//
// The suite checks what engine.Store's documentation promises: replacing and
// evicting registrations atomically (also under concurrent writers), dedupe
// marks (exactly one first push under concurrent callers), the outbox (contents, and delivery order through the engine's
// outbox), error accounting, disabled records, pruning, refusal of invalid
// keys, errors instead of panics after Close, and — for a store that claims
// durability (Reopen) — that everything written is there after a restart.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/push2/push2/engine"
)

// Option changes what the suite checks.
type Option func(*suite)

// Reopen declares the store durable: reopen closes s and returns the same
// store opened again, as after a restart of the process. The suite then
// checks that every write is still there.
func Reopen(reopen func(t *testing.T, s engine.Store) engine.Store) Option {
	return func(s *suite) { s.reopen = reopen }
}

type suite struct {
	open   func(t *testing.T) engine.Store
	reopen func(t *testing.T, s engine.Store) engine.Store
}

// Run runs the suite. open returns a new, empty store for each subtest; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) engine.Store, opts ...Option) {
	s := &suite{open: open}
	for _, o := range opts {
		o(s)
	}
	type test struct {
		name string
		fn   func(t *testing.T, h *handle)
	}
	tests := []test{
		{"Registrations", testRegistrations},
		{"RegistrationsOldestFirst", testOldestFirst},
		{"ForEachRegistrationGrouped", testGrouped},
		{"Eviction", testEviction},
		{"EvictionConcurrent", testEvictionConcurrent},
		{"DeleteRegistration", testDelete},
		{"Dedupe", testDedupe},
		{"DedupeConcurrent", testDedupeConcurrent},
		{"Prune", testPrune},
		{"Outbox", testOutbox},
		{"OutboxOrder", testOutboxOrder},
		{"RegState", testRegState},
		{"Disabled", testDisabled},
		{"InvalidKeys", testInvalidKeys},
		{"CallbackErrors", testCallbackErrors},
		{"Closed", testClosed},
		{"Suspended", testSuspended},
	}
	if s.reopen != nil {
		tests = append(tests, test{"Durable", testDurable}, test{"DurableConcurrent", testDurableConcurrent})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &handle{suite: s, t: t, Store: s.open(t)}
			t.Cleanup(func() {
				if !h.closed {
					h.Close()
				}
			})
			tc.fn(t, h)
		})
	}
}

// handle is the store under test; restart swaps it for the reopened one.
type handle struct {
	engine.Store
	*suite
	t      *testing.T
	closed bool
}

// restart reopens a durable store and reports true; for a store without
// durability it reports false and changes nothing.
func (h *handle) restart() bool {
	if h.reopen == nil {
		return false
	}
	h.Store = h.reopen(h.t, h.Store)
	return true
}

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const acct = "juliet@capulet.lit"

func key(id string) engine.RegKey { return engine.RegKey{Account: acct, ID: id} }

func reg(id string, created time.Time) engine.StoredRegistration {
	return engine.StoredRegistration{Account: acct, ID: id, Created: created,
		Enable: `<enable xmlns="urn:xmpp:push2:0"><service>pusher@push.example.com</service><client>` + id + `</client></enable>`}
}

func entry(id string, k engine.RegKey, created time.Time) engine.OutboxEntry {
	return engine.OutboxEntry{ID: id, Account: k.Account, Reg: k.ID, To: "pusher@push.example.com",
		Stanza: `<message id="` + id + `"/>`, Created: created, Due: created}
}

// same compares by JSON form: the records' own encoding, which ignores a
// time's monotonic reading and location pointer.
func same(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got  %s\n want %s", what, g, w)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ids(regs []engine.StoredRegistration) []string {
	out := []string{}
	for _, r := range regs {
		out = append(out, r.ID)
	}
	return out
}

func registrations(t *testing.T, s engine.Store) []string {
	t.Helper()
	regs, err := s.Registrations(acct)
	must(t, err)
	return ids(regs)
}

func outbox(t *testing.T, s engine.Store) map[string]engine.OutboxEntry {
	t.Helper()
	out := map[string]engine.OutboxEntry{}
	must(t, s.ForEachOutbox(func(e engine.OutboxEntry) error {
		if _, dup := out[e.ID]; dup {
			t.Errorf("ForEachOutbox visited %s twice", e.ID)
		}
		out[e.ID] = e
		return nil
	}))
	return out
}

// recordPush reports whether a push for keys is recorded as the first one.
func recordPush(t *testing.T, s engine.Store, k engine.RegKey, id string, at time.Time, keys ...string) bool {
	t.Helper()
	first, err := s.RecordPush(k, keys, at, entry(id, k, at))
	must(t, err)
	return first
}

func testRegistrations(t *testing.T, h *handle) {
	if got := registrations(t, h); len(got) != 0 {
		t.Fatalf("new store has registrations %v", got)
	}
	r := reg("phone", t0)
	ev, err := h.PutRegistration(r, 5)
	must(t, err)
	if len(ev) != 0 {
		t.Errorf("evicted %v from an empty account", ev)
	}
	got, err := h.Registrations(acct)
	must(t, err)
	same(t, "Registrations", got, []engine.StoredRegistration{r})
	// Same account and id: replaced, not added.
	r2 := reg("phone", t0.Add(time.Minute))
	r2.Enable = "<enable>new</enable>"
	_, err = h.PutRegistration(r2, 5)
	must(t, err)
	got, err = h.Registrations(acct)
	must(t, err)
	same(t, "Registrations after replace", got, []engine.StoredRegistration{r2})
	other := engine.StoredRegistration{Account: "romeo@montague.lit", ID: "phone", Created: t0, Enable: "<enable/>"}
	_, err = h.PutRegistration(other, 5)
	must(t, err)
	got, err = h.Registrations(acct)
	must(t, err)
	same(t, "Registrations of one account", got, []engine.StoredRegistration{r2})
	var all []engine.StoredRegistration
	must(t, h.ForEachRegistration(func(r engine.StoredRegistration) error { all = append(all, r); return nil }))
	sort.Slice(all, func(i, j int) bool { return all[i].Account < all[j].Account })
	same(t, "ForEachRegistration", all, []engine.StoredRegistration{r2, other})
	if got, err := h.Registrations("nobody@capulet.lit"); err != nil || len(got) != 0 {
		t.Errorf("unknown account: %v %v", got, err)
	}
}

// testGrouped: ForEachRegistration gives each account's registrations
// one after the other, however they were written, so a caller can tell
// accounts apart with no set of every account seen (engine.ForEachAccount
// at a million registrations).
func testGrouped(t *testing.T, h *handle) {
	accounts := []string{"b@capulet.lit", "a@capulet.lit", "c@montague.lit"}
	for i := range 9 {
		r := reg(fmt.Sprint("d", i), t0.Add(time.Duration(i)*time.Second))
		r.Account = accounts[i%len(accounts)]
		_, err := h.PutRegistration(r, 0)
		must(t, err)
	}
	var order []string
	n := 0
	must(t, h.ForEachRegistration(func(r engine.StoredRegistration) error {
		n++
		if len(order) == 0 || order[len(order)-1] != r.Account {
			order = append(order, r.Account)
		}
		return nil
	}))
	if n != 9 || len(order) != len(accounts) {
		t.Errorf("%d registrations in runs of accounts %v; want 9 in one run per account", n, order)
	}
}

func testOldestFirst(t *testing.T, h *handle) {
	for i, id := range []string{"b", "c", "a"} {
		_, err := h.PutRegistration(reg(id, t0.Add(time.Duration(2-i)*time.Hour)), 0)
		must(t, err)
	}
	same(t, "order", registrations(t, h), []string{"a", "c", "b"})
}

func testEviction(t *testing.T, h *handle) {
	for i, id := range []string{"a", "b", "c"} {
		_, err := h.PutRegistration(reg(id, t0.Add(time.Duration(i)*time.Minute)), 3)
		must(t, err)
	}
	if !recordPush(t, h, key("a"), "n-a", t0, "s:1") {
		t.Fatal("first push not recorded")
	}
	must(t, h.PutRegState(key("a"), engine.RegState{Errors: 1, FirstError: t0, LastCondition: "gone"}))
	ev, err := h.PutRegistration(reg("d", t0.Add(time.Hour)), 3)
	must(t, err)
	same(t, "evicted", ev, []engine.RegKey{key("a")})
	same(t, "left", registrations(t, h), []string{"b", "c", "d"})
	// The evicted registration's dedupe marks and error state went with it.
	if !recordPush(t, h, key("a"), "n-a2", t0, "s:1") {
		t.Error("dedupe mark of an evicted registration kept")
	}
	if st, err := h.RegState(key("a")); err != nil || st != (engine.RegState{}) {
		t.Errorf("error state of an evicted registration: %+v %v", st, err)
	}
	// Replacing a registration at the limit evicts nothing and keeps it.
	ev, err = h.PutRegistration(reg("b", t0.Add(2*time.Hour)), 3)
	must(t, err)
	if len(ev) != 0 {
		t.Errorf("replacing evicted %v", ev)
	}
	same(t, "after replace", registrations(t, h), []string{"c", "d", "b"})
	// A lower limit evicts several, oldest first; the new one always stays.
	ev, err = h.PutRegistration(reg("e", t0.Add(-time.Hour)), 1)
	must(t, err)
	same(t, "evicted at max 1", ev, []engine.RegKey{key("c"), key("d"), key("b")})
	same(t, "left at max 1", registrations(t, h), []string{"e"})
	// max 0: no limit.
	for i := range 7 {
		_, err := h.PutRegistration(reg(fmt.Sprint("u", i), t0.Add(time.Duration(i)*time.Second)), 0)
		must(t, err)
	}
	if got := registrations(t, h); len(got) != 8 {
		t.Errorf("max 0 kept %d, want 8", len(got))
	}
}

// testEvictionConcurrent: writers enabling at once never leave more than max
// registrations, and every registration is either kept or reported evicted
// exactly once.
func testEvictionConcurrent(t *testing.T, h *handle) {
	const writers, each, max = 8, 10, 3
	var mu sync.Mutex
	evicted := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				ev, err := h.PutRegistration(reg(id, t0.Add(time.Duration(i*writers+w)*time.Millisecond)), max)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, k := range ev {
					if k.ID == id {
						errs <- fmt.Errorf("PutRegistration(%s) evicted itself", id)
					}
					evicted[k.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	left := registrations(t, h)
	if len(left) != max {
		t.Fatalf("%d registrations left, want %d: %v", len(left), max, left)
	}
	for _, id := range left {
		if evicted[id] != 0 {
			t.Errorf("%s reported evicted but still stored", id)
		}
		evicted[id]++
	}
	for w := range writers {
		for i := range each {
			if id := fmt.Sprintf("w%d-%d", w, i); evicted[id] != 1 {
				t.Errorf("%s: kept or evicted %d times, want 1", id, evicted[id])
			}
		}
	}
}

func testDelete(t *testing.T, h *handle) {
	_, err := h.PutRegistration(reg("phone", t0), 5)
	must(t, err)
	_, err = h.PutRegistration(reg("tablet", t0.Add(time.Second)), 5)
	must(t, err)
	recordPush(t, h, key("phone"), "n1", t0, "s:1")
	must(t, h.PutRegState(key("phone"), engine.RegState{Errors: 2, FirstError: t0}))
	ok, err := h.DeleteRegistration(key("phone"))
	must(t, err)
	if !ok {
		t.Error("DeleteRegistration of a stored registration reported none")
	}
	same(t, "left", registrations(t, h), []string{"tablet"})
	if !recordPush(t, h, key("phone"), "n2", t0, "s:1") {
		t.Error("dedupe mark kept after delete")
	}
	if st, err := h.RegState(key("phone")); err != nil || st != (engine.RegState{}) {
		t.Errorf("error state kept after delete: %+v %v", st, err)
	}
	ok, err = h.DeleteRegistration(key("phone"))
	if err != nil || ok {
		t.Errorf("second delete: %v %v, want false, nil", ok, err)
	}
	if ok, err := h.DeleteRegistration(key("never")); err != nil || ok {
		t.Errorf("delete of an unknown registration: %v %v", ok, err)
	}
}

func testDedupe(t *testing.T, h *handle) {
	k := key("phone")
	if !recordPush(t, h, k, "n1", t0, "a:arch1", "s:1") {
		t.Fatal("first push not recorded")
	}
	if _, ok := outbox(t, h)["n1"]; !ok {
		t.Fatal("RecordPush did not put the entry in the outbox")
	}
	// Any one known name of the stanza makes it a duplicate, and a duplicate
	// records nothing (no entry, no new mark).
	for i, keys := range [][]string{{"s:1"}, {"a:arch1"}, {"a:arch2", "s:1"}} {
		id := fmt.Sprint("dup", i)
		if recordPush(t, h, k, id, t0, keys...) {
			t.Errorf("push for %v recorded again", keys)
		}
		if _, ok := outbox(t, h)[id]; ok {
			t.Errorf("duplicate %v put entry %s in the outbox", keys, id)
		}
	}
	if !recordPush(t, h, k, "n2", t0, "a:arch3", "s:3") {
		t.Error("a new stanza was taken for a duplicate")
	}
	if !recordPush(t, h, k, "n3", t0, "a:arch2") {
		t.Error("a:arch2 was recorded by a refused duplicate")
	}
	// Marks are per registration.
	if !recordPush(t, h, key("tablet"), "n4", t0, "a:arch1", "s:1") {
		t.Error("another registration's push taken for a duplicate")
	}
	if got := len(outbox(t, h)); got != 4 {
		t.Errorf("outbox holds %d entries, want 4", got)
	}
}

// recordConcurrently runs RecordPush for registration k from n goroutines
// at once, rounds times; in round r, goroutine g records entry "r<r>-g<g>"
// with keys from keysOf(r, g). It returns, per round, the entry ids
// reported first.
func recordConcurrently(t *testing.T, s engine.Store, k engine.RegKey, n, rounds int, keysOf func(r, g int) []string) [][]string {
	t.Helper()
	firsts := make([][]string, rounds)
	var mu sync.Mutex
	for r := range rounds {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				id := fmt.Sprintf("r%d-g%d", r, g)
				first, err := s.RecordPush(k, keysOf(r, g), t0, entry(id, k, t0))
				if err != nil {
					t.Error(err)
					return
				}
				if first {
					mu.Lock()
					firsts[r] = append(firsts[r], id)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	return firsts
}

// testDedupeConcurrent: concurrent RecordPush calls for the same stanza
// (one shared key, and each its own other key, as the offline and archive
// triggers report one stanza under different names) record it exactly
// once, however the store batches their commits; the outbox holds exactly
// the entries reported first.
func testDedupeConcurrent(t *testing.T, h *handle) {
	const n, rounds = 16, 20
	k := key("phone")
	firsts := recordConcurrently(t, h, k, n, rounds, func(r, g int) []string {
		return []string{fmt.Sprintf("a:arch-%d-%d", r, g), fmt.Sprintf("s:%d", r)}
	})
	want := map[string]bool{}
	for r, f := range firsts {
		if len(f) != 1 {
			t.Errorf("round %d: %d calls reported first (%v), want exactly 1", r, len(f), f)
		}
		for _, id := range f {
			want[id] = true
		}
	}
	got := outbox(t, h)
	if len(got) != len(want) {
		t.Errorf("outbox holds %d entries, want %d", len(got), len(want))
	}
	for id := range want {
		if _, ok := got[id]; !ok {
			t.Errorf("entry %s reported first but not in the outbox", id)
		}
	}
}

// testDurableConcurrent: pushes recorded by concurrent calls (which a
// store may commit together) are all there after a restart, entries and
// marks.
func testDurableConcurrent(t *testing.T, h *handle) {
	const n, rounds = 32, 4
	k := key("phone")
	recordConcurrently(t, h, k, n, rounds, func(r, g int) []string {
		return []string{fmt.Sprintf("s:%d-%d", r, g)}
	})
	h.restart()
	got := outbox(t, h)
	if len(got) != n*rounds {
		t.Errorf("after restart the outbox holds %d entries, want %d", len(got), n*rounds)
	}
	for r := range rounds {
		for g := range n {
			if _, ok := got[fmt.Sprintf("r%d-g%d", r, g)]; !ok {
				t.Errorf("entry r%d-g%d lost in restart", r, g)
			}
			if recordPush(t, h, k, "again", t0, fmt.Sprintf("s:%d-%d", r, g)) {
				t.Errorf("mark s:%d-%d lost in restart", r, g)
			}
		}
	}
}

func testPrune(t *testing.T, h *handle) {
	k := key("phone")
	recordPush(t, h, k, "n1", t0, "s:old")
	recordPush(t, h, k, "n2", t0.Add(2*time.Hour), "s:new", "a:new")
	recordPush(t, h, key("tablet"), "n3", t0, "s:old")
	n, err := h.PruneMarks(t0.Add(time.Hour))
	must(t, err)
	if n != 2 {
		t.Errorf("PruneMarks forgot %d marks, want 2", n)
	}
	if !recordPush(t, h, k, "n4", t0.Add(3*time.Hour), "s:old") {
		t.Error("pruned mark still counts")
	}
	if recordPush(t, h, k, "n5", t0.Add(3*time.Hour), "a:new") {
		t.Error("a mark newer than the cut was pruned")
	}
	if got := len(outbox(t, h)); got != 4 {
		t.Errorf("pruning changed the outbox: %d entries, want 4", got)
	}
	if n, err := h.PruneMarks(t0.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("second prune: %d %v", n, err)
	}
}

func testOutbox(t *testing.T, h *handle) {
	k := key("phone")
	e := entry("n1", k, t0)
	must(t, h.PutOutbox(e, true))
	e.Attempts, e.SentAt, e.LastErr = 2, t0.Add(time.Second), "wait/resource-constraint"
	must(t, h.PutOutbox(e, false))
	e2 := entry("n2", key("tablet"), t0.Add(time.Minute))
	must(t, h.PutOutbox(e2, true))
	same(t, "outbox", outbox(t, h), map[string]engine.OutboxEntry{"n1": e, "n2": e2})
	must(t, h.DeleteOutbox("n1"))
	must(t, h.DeleteOutbox("n1")) // missing: not an error
	same(t, "outbox after delete", outbox(t, h), map[string]engine.OutboxEntry{"n2": e2})
	if b, ok := h.Store.(engine.OutboxBatcher); ok {
		e2.SentAt = t0.Add(2 * time.Minute)
		e3 := entry("n3", key("phone"), t0.Add(time.Minute))
		e3.SentAt = t0.Add(3 * time.Minute)
		must(t, b.PutOutboxes([]engine.OutboxEntry{e2, e3}))
		same(t, "outbox after PutOutboxes", outbox(t, h), map[string]engine.OutboxEntry{"n2": e2, "n3": e3})
	}
}

// testOutboxOrder: the engine's outbox, loading from this store, sends due
// notifications oldest first whatever order the store returns them in.
func testOutboxOrder(t *testing.T, h *handle) {
	const n = 50
	want := make([]string, n)
	for i, j := range rand.Perm(n) {
		id := fmt.Sprintf("n%02d", j)
		want[j] = id
		e := entry(id, key(fmt.Sprint("r", i%3)), t0.Add(time.Duration(j)*time.Second))
		must(t, h.PutOutbox(e, false))
	}
	h.restart() // a durable store: the entries are loaded after a restart
	same(t, "send order", sendAll(t, h.Store, n), want)
}

// sendAll runs an engine's outbox on s until it sent n notifications, and
// returns their ids in sending order.
func sendAll(t *testing.T, s engine.Store, n int) []string {
	t.Helper()
	now := t0.Add(time.Hour)
	e := engine.New(s, engine.NewRegistry(), engine.Config{Clock: func() time.Time { return now }})
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(done)
		e.Outbox().Run(ctx, func(_ context.Context, en engine.OutboxEntry) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, en.ID)
			if len(got) == n {
				cancel()
			}
			return nil
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("outbox sent %d of %d", len(got), n)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}

func testRegState(t *testing.T, h *handle) {
	k := key("phone")
	if st, err := h.RegState(k); err != nil || st != (engine.RegState{}) {
		t.Fatalf("missing state: %+v %v", st, err)
	}
	st := engine.RegState{Errors: 3, FirstError: t0, LastCondition: "item-not-found"}
	must(t, h.PutRegState(k, st))
	got, err := h.RegState(k)
	must(t, err)
	same(t, "RegState", got, st)
	if other, err := h.RegState(key("tablet")); err != nil || other != (engine.RegState{}) {
		t.Errorf("state leaked to another registration: %+v %v", other, err)
	}
	must(t, h.PutRegState(k, engine.RegState{}))
	if st, err := h.RegState(k); err != nil || st != (engine.RegState{}) {
		t.Errorf("state after reset: %+v %v", st, err)
	}
	// A fresh enable starts a fresh error account.
	must(t, h.PutRegState(k, st))
	_, err = h.PutRegistration(reg("phone", t0), 5)
	must(t, err)
	if st, err := h.RegState(k); err != nil || st != (engine.RegState{}) {
		t.Errorf("state after re-enable: %+v %v", st, err)
	}
}

func testDisabled(t *testing.T, h *handle) {
	for i, id := range []string{"phone", "tablet", "watch"} {
		_, err := h.PutRegistration(reg(id, t0.Add(time.Duration(i)*time.Second)), 5)
		must(t, err)
	}
	recordPush(t, h, key("phone"), "n1", t0, "s:1")
	must(t, h.PutRegState(key("phone"), engine.RegState{Errors: 16, FirstError: t0}))
	recs := map[string]engine.DisabledRecord{}
	for _, id := range []string{"phone", "watch"} {
		rec := engine.DisabledRecord{Account: acct, ID: id, At: t0.Add(time.Hour), Reason: "16 notifications in a row failed (max 16)",
			Errors: 16, FirstError: t0, LastCondition: "item-not-found", Service: "pusher@push.example.com"}
		must(t, h.DisableRegistration(key(id), rec))
		recs[id] = rec
	}
	same(t, "left", registrations(t, h), []string{"tablet"})
	got, err := h.Disabled(acct)
	must(t, err)
	same(t, "Disabled", got, []engine.DisabledRecord{recs["phone"], recs["watch"]})
	if st, err := h.RegState(key("phone")); err != nil || st != (engine.RegState{}) {
		t.Errorf("error state kept after disable: %+v %v", st, err)
	}
	if !recordPush(t, h, key("phone"), "n2", t0, "s:1") {
		t.Error("dedupe mark kept after disable")
	}
	if other, err := h.Disabled("romeo@montague.lit"); err != nil || len(other) != 0 {
		t.Errorf("another account's disabled records: %v %v", other, err)
	}
	// Enabling again clears the record.
	_, err = h.PutRegistration(reg("phone", t0.Add(2*time.Hour)), 5)
	must(t, err)
	got, err = h.Disabled(acct)
	must(t, err)
	same(t, "Disabled after re-enable", got, []engine.DisabledRecord{recs["watch"]})
}

func testInvalidKeys(t *testing.T, h *handle) {
	for _, k := range []engine.RegKey{{Account: "", ID: "phone"}, {Account: acct, ID: ""}, {Account: acct, ID: "ph\x00one"}, {Account: "jul\x00iet@capulet.lit", ID: "phone"}} {
		r := engine.StoredRegistration{Account: k.Account, ID: k.ID, Created: t0, Enable: "<enable/>"}
		if _, err := h.PutRegistration(r, 5); err == nil {
			t.Errorf("PutRegistration(%q) accepted", k)
		}
		if _, err := h.RecordPush(k, []string{"s:1"}, t0, entry("bad", k, t0)); err == nil {
			t.Errorf("RecordPush(%q) accepted", k)
		}
		if err := h.DisableRegistration(k, engine.DisabledRecord{Account: k.Account, ID: k.ID}); err == nil {
			t.Errorf("DisableRegistration(%q) accepted", k)
		}
	}
	n := 0
	must(t, h.ForEachRegistration(func(engine.StoredRegistration) error { n++; return nil }))
	if n != 0 || len(outbox(t, h)) != 0 {
		t.Errorf("refused writes stored something: %d registrations, %d outbox entries", n, len(outbox(t, h)))
	}
}

// testCallbackErrors: an error from the callback of ForEach… stops the
// iteration and is returned as is.
func testCallbackErrors(t *testing.T, h *handle) {
	for i := range 3 {
		_, err := h.PutRegistration(reg(fmt.Sprint("r", i), t0.Add(time.Duration(i)*time.Second)), 0)
		must(t, err)
		must(t, h.PutOutbox(entry(fmt.Sprint("n", i), key("r0"), t0), false))
	}
	stop := errors.New("stop")
	calls := 0
	if err := h.ForEachRegistration(func(engine.StoredRegistration) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ForEachRegistration: %v after %d calls, want the callback's error after 1", err, calls)
	}
	calls = 0
	if err := h.ForEachOutbox(func(engine.OutboxEntry) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ForEachOutbox: %v after %d calls, want the callback's error after 1", err, calls)
	}
}

// testClosed: after Close every method fails with an error; none panics and
// none reports success.
func testClosed(t *testing.T, h *handle) {
	_, err := h.PutRegistration(reg("phone", t0), 5)
	must(t, err)
	must(t, h.Close())
	h.closed = true
	k := key("phone")
	for name, call := range map[string]func() error{
		"PutRegistration":     func() error { _, err := h.PutRegistration(reg("tablet", t0), 5); return err },
		"DeleteRegistration":  func() error { _, err := h.DeleteRegistration(k); return err },
		"Registrations":       func() error { _, err := h.Registrations(acct); return err },
		"ForEachRegistration": func() error { return h.ForEachRegistration(func(engine.StoredRegistration) error { return nil }) },
		"RecordPush":          func() error { _, err := h.RecordPush(k, []string{"s:1"}, t0, entry("n1", k, t0)); return err },
		"PutOutbox":           func() error { return h.PutOutbox(entry("n1", k, t0), true) },
		"DeleteOutbox":        func() error { return h.DeleteOutbox("n1") },
		"ForEachOutbox":       func() error { return h.ForEachOutbox(func(engine.OutboxEntry) error { return nil }) },
		"RegState":            func() error { _, err := h.RegState(k); return err },
		"PutRegState":         func() error { return h.PutRegState(k, engine.RegState{Errors: 1}) },
		"DisableRegistration": func() error { return h.DisableRegistration(k, engine.DisabledRecord{Account: acct, ID: "phone"}) },
		"Disabled":            func() error { _, err := h.Disabled(acct); return err },
		"PruneMarks":          func() error { _, err := h.PruneMarks(t0); return err },
		"Close":               h.Close,
	} {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s after Close panicked: %v", name, p)
				}
			}()
			if err := call(); err == nil {
				t.Errorf("%s after Close succeeded", name)
			}
		}()
	}
}

// testDurable: for a durable store, everything acknowledged is there after
// a restart: registrations and evictions, dedupe marks and pruning, the
// outbox, error states and disabled records.
func testDurable(t *testing.T, h *handle) {
	for i, id := range []string{"a", "b", "c"} {
		_, err := h.PutRegistration(reg(id, t0.Add(time.Duration(i)*time.Minute)), 2)
		must(t, err)
	}
	recordPush(t, h, key("b"), "n1", t0, "s:old")
	recordPush(t, h, key("b"), "n2", t0.Add(2*time.Hour), "s:new")
	if n, err := h.PruneMarks(t0.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	sent := entry("n1", key("b"), t0)
	sent.Attempts, sent.SentAt = 1, t0.Add(time.Second)
	must(t, h.PutOutbox(sent, true))
	must(t, h.DeleteOutbox("n2"))
	must(t, h.PutRegState(key("c"), engine.RegState{Errors: 2, FirstError: t0, LastCondition: "gone"}))
	rec := engine.DisabledRecord{Account: acct, ID: "d", At: t0, Reason: "test", Errors: 16, FirstError: t0, LastCondition: "gone", Service: "pusher@push.example.com"}
	must(t, h.DisableRegistration(key("d"), rec))

	h.restart()
	same(t, "registrations", registrations(t, h), []string{"b", "c"})
	same(t, "outbox", outbox(t, h), map[string]engine.OutboxEntry{"n1": sent})
	if !recordPush(t, h, key("b"), "n3", t0.Add(3*time.Hour), "s:old") {
		t.Error("pruned mark back after restart")
	}
	if recordPush(t, h, key("b"), "n4", t0.Add(3*time.Hour), "s:new") {
		t.Error("dedupe mark lost in restart")
	}
	st, err := h.RegState(key("c"))
	must(t, err)
	same(t, "error state", st, engine.RegState{Errors: 2, FirstError: t0, LastCondition: "gone"})
	recs, err := h.Disabled(acct)
	must(t, err)
	same(t, "disabled", recs, []engine.DisabledRecord{rec})
}

// testSuspended: a registration's Suspended mark (the server disabled the
// account) is stored with it, survives a restart, and is cleared by
// putting it again without the mark.
func testSuspended(t *testing.T, h *handle) {
	r := reg("phone", t0)
	r.Suspended = true
	_, err := h.PutRegistration(r, 5)
	must(t, err)
	_, err = h.PutRegistration(reg("tablet", t0.Add(time.Second)), 5)
	must(t, err)
	want := []engine.StoredRegistration{r, reg("tablet", t0.Add(time.Second))}
	got, err := h.Registrations(acct)
	must(t, err)
	same(t, "Registrations", got, want)
	if h.restart() {
		got, err = h.Registrations(acct)
		must(t, err)
		same(t, "Registrations after a restart", got, want)
	}
	r.Suspended = false
	_, err = h.PutRegistration(r, 5)
	must(t, err)
	got, err = h.Registrations(acct)
	must(t, err)
	same(t, "Registrations after the mark is cleared", got, []engine.StoredRegistration{r, reg("tablet", t0.Add(time.Second))})
}
