package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// TestRegistrationCacheBounded: the cache never holds more parsed
// registrations than Config.RegistrationCache, the least recently used
// account goes first, and an account that was dropped is read and parsed
// again, with the same answer.
func TestRegistrationCacheBounded(t *testing.T) {
	e, _, _ := newEngine(t, engine.Config{RegistrationCache: 3})
	probe := &provisionProbe{}
	if err := e.Registry().Update("test", []engine.MatchProfile{probe}, nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	enable := stanza.MustParse(enableXML(`<match profile="` + probeURI + `">` + notify + `</match>`))
	accounts := make([]string, 6)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("user%d@capulet.lit", i)
		if _, _, err := e.Enable(ctx, accounts[i], "phone", enable); err != nil {
			t.Fatal(err)
		}
	}
	push := func(acct string, n int) {
		t.Helper()
		st := stanza.MustParse(fmt.Sprintf(`<message xmlns="jabber:client" from="romeo@montague.lit/o" type="chat" id="c%d"><body>hi</body></message>`, n))
		res, err := e.Evaluate(ctx, &engine.Event{Stanza: st, Context: engine.Context{Account: acct, Trigger: engine.TriggerOffline}})
		if err != nil || len(res.Notifications) != 1 {
			t.Fatalf("%s: %v, outcomes %+v", acct, err, res.Outcomes)
		}
	}
	for i, a := range accounts {
		push(a, i)
		if _, regs := e.CacheLen(); regs > 3 {
			t.Fatalf("after %d accounts the cache holds %d registrations, more than its bound of 3", i+1, regs)
		}
	}
	if accts, regs := e.CacheLen(); accts != 3 || regs != 3 {
		t.Fatalf("cache holds %d accounts, %d registrations; want 3 and 3", accts, regs)
	}
	// user5, user4, user3 are cached: no parse. user0 was dropped: parsed
	// again, and it pushes as before.
	before := probe.calls.Load()
	push(accounts[5], 10)
	push(accounts[3], 11)
	if probe.calls.Load() != before {
		t.Fatal("a cached account was parsed again")
	}
	push(accounts[0], 12)
	if probe.calls.Load() != before+1 {
		t.Fatalf("%d parses for a dropped account, want 1", probe.calls.Load()-before)
	}
	// user4 was the least recently used: it went for user0.
	before = probe.calls.Load()
	push(accounts[3], 13)
	push(accounts[5], 14)
	push(accounts[0], 15)
	if probe.calls.Load() != before {
		t.Fatal("a recently used account was dropped instead of the least recently used")
	}
	push(accounts[4], 16)
	if probe.calls.Load() != before+1 {
		t.Fatal("the least recently used account was still cached")
	}
}

// TestProfileSwapInvalidatesUsers: a profile swap drops the parsed
// registrations that use the swapped profile, and only those; the others
// are not parsed again. A registration that did not parse (its profile was
// not loaded) comes back when the profile is.
func TestProfileSwapInvalidatesUsers(t *testing.T) {
	e, store, _ := newEngine(t, engine.Config{})
	probe := &provisionProbe{}
	if err := e.Registry().Update("test", []engine.MatchProfile{probe}, nil, nil); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const other = "romeo@montague.lit"
	if _, _, err := e.Enable(ctx, account, "phone", stanza.MustParse(enableXML(`<match profile="`+probeURI+`">`+notify+`</match>`))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Enable(ctx, other, "phone", stanza.MustParse(enableXML(matchXML("important")))); err != nil {
		t.Fatal(err)
	}
	first := map[string]*engine.Registration{}
	for _, a := range []string{account, other} {
		regs, err := e.Registrations(ctx, a)
		if err != nil || len(regs) != 1 {
			t.Fatalf("%s: %d registrations, %v", a, len(regs), err)
		}
		first[a] = regs[0]
	}
	// A new version of the probe: the account using it is parsed again
	// (a new *Registration), the other keeps its parsed one.
	if err := e.Registry().Update("test v2", []engine.MatchProfile{&provisionProbe{}}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if accts, _ := e.CacheLen(); accts != 1 {
		t.Fatalf("after the swap %d accounts cached, want 1 (the one not using the probe)", accts)
	}
	regs, _ := e.Registrations(ctx, other)
	if len(regs) != 1 || regs[0] != first[other] {
		t.Error("a registration not using the swapped profile was parsed again")
	}
	regs, _ = e.Registrations(ctx, account)
	if len(regs) != 1 || regs[0] == first[account] {
		t.Error("a registration using the swapped profile was not parsed again")
	}

	// Unloaded: the registration is skipped (still stored); loaded again:
	// it is back, although nothing it was parsed with changed since.
	e.Registry().Update("test", nil, nil, []string{probeURI})
	if regs, _ := e.Registrations(ctx, account); len(regs) != 0 {
		t.Fatalf("%d registrations with the profile unloaded", len(regs))
	}
	if stored, _ := store.Registrations(account); len(stored) != 1 {
		t.Fatal("the registration was removed from the store")
	}
	e.Registry().Update("test", []engine.MatchProfile{probe}, nil, nil)
	if regs, _ := e.Registrations(ctx, account); len(regs) != 1 {
		t.Fatalf("%d registrations once the profile is back", len(regs))
	}
	regs, _ = e.Registrations(ctx, other)
	if len(regs) != 1 || regs[0] != first[other] {
		t.Error("unrelated swaps parsed the other account again")
	}
}
