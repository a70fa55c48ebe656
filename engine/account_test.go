package engine_test

import (
	"context"
	"testing"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pebblestore"
	"github.com/push2/push2/engine/stanza"
)

// TestAccountLifecycle (issue 13, Build 2): an account the server disables
// keeps its registrations, suspended: no push (OutcomeSuspended), no ping,
// also after a restart of the engine on the same store; enabled again, it
// pushes as before. Deleted, it has no registrations left; other accounts
// are untouched.
func TestAccountLifecycle(t *testing.T) {
	dir := t.TempDir()
	open := func() (*engine.Engine, *pebblestore.Store) { return openDir(t, dir) }
	ctx := context.Background()
	const other = "nurse@capulet.lit"
	e, s := open()
	for _, acct := range []string{account, other} {
		for _, id := range []string{"phone", "tablet"} {
			if _, _, err := e.Enable(ctx, acct, id, stanza.MustParse(enableXML(matchXML("all", "")))); err != nil {
				t.Fatal(err)
			}
		}
	}
	evaluate := func(acct string) *engine.Result {
		t.Helper()
		res, err := e.Evaluate(ctx, &engine.Event{Stanza: stanza.MustParse(msgBody), Context: engine.Context{Account: acct, Trigger: engine.TriggerOffline}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	if n, err := e.SuspendAccount(ctx, "Juliet@Capulet.lit", true); err != nil || n != 2 {
		t.Fatalf("SuspendAccount = %d, %v, want 2 registrations", n, err)
	}
	s.Close()
	e, s = open()
	defer func() { s.Close() }()
	regs, err := e.Registrations(ctx, account)
	if err != nil || len(regs) != 2 || !regs[0].Suspended || !regs[1].Suspended {
		t.Fatalf("after a restart: %d registrations, %v, want 2 suspended", len(regs), err)
	}
	res := evaluate(account)
	if len(res.Notifications) != 0 || len(res.Outcomes) != 2 || res.Outcomes[0].Code != engine.OutcomeSuspended {
		t.Errorf("suspended account evaluated: %+v", res.Outcomes)
	}
	if ns, err := e.Ping(ctx, account, nil); err != nil || len(ns) != 0 {
		t.Errorf("ping of a suspended account: %d notifications, %v", len(ns), err)
	}
	if res := evaluate(other); len(res.Notifications) != 2 {
		t.Errorf("another account: %+v", res.Outcomes)
	}
	// Twice is harmless.
	if n, err := e.SuspendAccount(ctx, account, true); err != nil || n != 0 {
		t.Errorf("second SuspendAccount = %d, %v", n, err)
	}

	if n, err := e.SuspendAccount(ctx, account, false); err != nil || n != 2 {
		t.Fatalf("SuspendAccount(false) = %d, %v", n, err)
	}
	if res := evaluate(account); len(res.Notifications) != 2 {
		t.Errorf("enabled again: %+v", res.Outcomes)
	}

	if n, err := e.DeleteAccount(ctx, account); err != nil || n != 2 {
		t.Fatalf("DeleteAccount = %d, %v", n, err)
	}
	if regs, err := e.Registrations(ctx, account); err != nil || len(regs) != 0 {
		t.Errorf("after DeleteAccount: %d registrations, %v", len(regs), err)
	}
	if regs, err := e.Registrations(ctx, other); err != nil || len(regs) != 2 {
		t.Errorf("other account after DeleteAccount: %d, %v", len(regs), err)
	}
	for _, bad := range []string{"", "capulet.lit", "juliet@capulet.lit/balcony"} {
		if _, err := e.DeleteAccount(ctx, bad); err == nil {
			t.Errorf("DeleteAccount(%q) accepted", bad)
		}
		if _, err := e.SuspendAccount(ctx, bad, true); err == nil {
			t.Errorf("SuspendAccount(%q) accepted", bad)
		}
	}
}
