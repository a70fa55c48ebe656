package pgstore

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/push2/push2/engine"
)

// TestSweepLeader: several engines on one database run one periodic sweep
// between them, not one each. While two run, one leads and sweeps (and its
// sweep prunes the dedupe marks past the retention) and the other never
// does; when the leader dies without giving the lead up (its database
// connection gone), the other takes the lead within the lease plus a tick
// and sweeps; an engine stopped cleanly gives the lead up, so that the next
// one leads at once, not after the lease.
func TestSweepLeader(t *testing.T) {
	dsn := server.NewDatabase(t)
	const every = time.Second // the tick; the lease is three
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	type inst struct {
		st     *Store
		e      *engine.Engine
		cancel func()
		done   chan struct{}
	}
	start := func() *inst {
		st := open(t, dsn)
		e := engine.New(st, engine.NewRegistry(), engine.Config{SweepEvery: every, DedupeRetention: time.Hour, Logger: quiet})
		ctx, cancel := context.WithCancel(context.Background())
		in := &inst{st: st, e: e, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(in.done)
			e.Outbox().Run(ctx, func(context.Context, engine.OutboxEntry) error { return nil })
		}()
		t.Cleanup(func() { cancel(); <-in.done; st.Close() })
		return in
	}
	sweeps := func(in *inst) (int, bool) { return in.e.Outbox().Sweeps() }
	a, b := start(), start()
	k := engine.RegKey{Account: "juliet@capulet.lit", ID: "phone"}
	old := time.Now().Add(-2 * time.Hour)
	if _, err := a.st.RecordPush(k, []string{"s:old"}, old, engine.OutboxEntry{ID: "old", Account: k.Account, Reg: k.ID, Created: old, Due: old, SentAt: old}); err != nil {
		t.Fatal(err)
	}

	time.Sleep(3*every + every/2)
	na, la := sweeps(a)
	nb, lb := sweeps(b)
	if la == lb || (na == 0) == (nb == 0) {
		t.Fatalf("two engines: sweeps %d (leading %v) and %d (leading %v), want one leader that sweeps and one that does not", na, la, nb, lb)
	}
	leader, other := a, b
	if lb {
		leader, other = b, a
	}
	nl, _ := sweeps(leader)
	if nl < 3 {
		t.Errorf("the leader swept %d times in %v, every %v", nl, 3*every+every/2, every)
	}
	var marks int
	if err := a.st.pool.QueryRow(context.Background(), `SELECT count(*) FROM push2_marks`).Scan(&marks); err != nil || marks != 0 {
		t.Errorf("dedupe marks past the retention after the leader's sweeps: %d %v", marks, err)
	}

	// The leader dies: its store is closed under it, it cannot renew nor
	// give up its lead.
	leader.st.Close()
	died := time.Now()
	waitUntil(t, 3*every+3*every, "the other engine leading", func() bool { _, l := sweeps(other); return l })
	took := time.Since(died)
	waitUntil(t, 2*every, "the other engine sweeping", func() bool { n, _ := sweeps(other); return n > 0 })
	if took > 3*every+2*every { // the lease, a tick, and a tick of slack for a loaded machine
		t.Errorf("the lead taken %v after the leader died, more than the lease (%v) and two ticks", took, 3*every)
	}
	nl2, _ := sweeps(leader)
	if nl2 > nl+1 {
		t.Errorf("the dead leader went on sweeping: %d then %d", nl, nl2)
	}

	// Stopped cleanly, the new leader gives the lead up: a new engine
	// leads at its first try, well within the lease.
	other.cancel()
	<-other.done
	c := start()
	waitUntil(t, every+every/2, "a new engine leading after a clean stop of the leader", func() bool { _, l := sweeps(c); return l })
	t.Logf("lead taken over %v after the leader died (lease %v, tick %v)", took.Round(time.Millisecond), 3*every, every)
}
