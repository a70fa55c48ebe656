package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"time"
)

// SharedOutbox is implemented by a Store that several engines (several
// push2d instances) share, such as engine/pgstore. An Outbox on such a
// store keeps no copy of the entries: it claims due entries from the store
// before sending them, so that an entry is sent by one instance at a time,
// and it finds in the store the entries another instance decided or sent
// (a delivery report may reach any instance). A claim is a lease: if the
// claimant dies, the store hands the entry to another claimant once the
// lease has run out.
type SharedOutbox interface {
	// ClaimOutbox claims up to n pending entries due at now, oldest
	// (Created) first, that no other owner holds an unexpired claim on, for
	// owner; the claim lasts the store's lease. Claimed entries come back
	// in sending order.
	ClaimOutbox(owner string, now time.Time, n int) ([]OutboxEntry, error)
	// SentOutbox records the sends of es (PutOutbox), in one transaction,
	// of those owner still holds the claim on, and returns their ids. A
	// claim is gone when the entry was changed meanwhile (an error reply
	// rescheduled it) or the lease ran out.
	SentOutbox(owner string, es []OutboxEntry) (recorded []string, err error)
	// ReleaseOutbox drops owner's claims on the entries ids that are still
	// pending (not handed over), so another instance may send them at once.
	ReleaseOutbox(owner string, ids []string) error
	// TakeDelivered removes up to n sent entries whose SentAt is at or
	// before sentBefore (their error window is over) and returns them; an
	// entry is returned to one caller only.
	TakeDelivered(sentBefore time.Time, n int) ([]OutboxEntry, error)
	// GetOutbox returns entry id, if the outbox holds it.
	GetOutbox(id string) (OutboxEntry, bool, error)
	// OutboxLen counts the outbox's entries.
	OutboxLen() (int, error)
}

// sharedBatch is how many entries a round claims; sharedPoll is how often an
// idle outbox looks for entries decided by other instances.
const (
	sharedBatch = 32
	sharedPoll  = 250 * time.Millisecond
)

// SharedInFlight bounds the claims an outbox on a SharedOutbox holds on
// notifications it has handed over, or is handing over, and not yet
// recorded as sent (those awaiting the server's routing confirmation
// included). It is the at-least-once window of a crash: an instance that
// dies leaves at most this many notifications that another instance sends
// again once the claims run out, some of which the server may have routed
// already (docs/push2d.md "PostgreSQL"). Without the bound, an instance
// handing notifications over faster than the server confirms them held
// claims on 800 of a 1,000-message burst (e2e TestFailover).
const SharedInFlight = 64

// newOwner names this outbox in its claims: host, process and a random
// part (two engines in one process differ).
func newOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return host + "/" + strconv.Itoa(os.Getpid()) + "/" + hex.EncodeToString(b[:])
}

// runShared is Run on a SharedOutbox: claim due entries, send them, record
// the sends; take the entries past their error window as delivered.
func (o *Outbox) runShared(ctx context.Context, send Sender) error {
	// On a SweepLeader store one instance, elected, runs the sweeps.
	defer o.startSweeps(ctx)()
	for {
		wait := o.stepShared(ctx, send)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-o.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// stepShared does one round and returns how long to wait for the next.
func (o *Outbox) stepShared(ctx context.Context, send Sender) time.Duration {
	now := o.clock()
	for {
		done, err := o.shared.TakeDelivered(now.Add(-o.pol.ErrorWindow), sharedBatch)
		if err != nil {
			o.log.Error("outbox: take delivered", "err", err)
			break
		}
		for _, e := range done {
			o.delivered(e)
		}
		if len(done) < sharedBatch {
			break
		}
	}
	// Confirmations that never came: the claims have run out (the lease is
	// shorter than RouteTimeout), so any instance sends those again.
	o.mu.Lock()
	for id, e := range o.awaiting {
		if !e.SentAt.Add(RouteTimeout).After(now) {
			delete(o.awaiting, id)
		}
	}
	o.mu.Unlock()
	for ctx.Err() == nil {
		o.mu.Lock()
		n := min(sharedBatch, SharedInFlight-len(o.awaiting))
		o.mu.Unlock()
		if n <= 0 {
			return sharedPoll // routedShared pokes when confirmations free claims
		}
		batch, err := o.shared.ClaimOutbox(o.owner, o.clock(), n)
		if err != nil {
			o.log.Error("outbox: claim", "err", err)
			return time.Second
		}
		// The sends of the batch not awaiting a routing confirmation,
		// recorded together right after the batch (one commit).
		var done []OutboxEntry
		var notReady []string
		for i, e := range batch {
			e.Attempts++
			if o.refresh != nil {
				o.refresh(ctx, &e)
			}
			await := o.AwaitRouted != nil && o.AwaitRouted(e)
			if await {
				// Filed before the send: the confirmation may come back
				// before send returns.
				e.SentAt = o.clock()
				o.mu.Lock()
				if o.awaiting == nil {
					o.awaiting = map[string]OutboxEntry{}
				}
				o.awaiting[e.ID] = e
				o.mu.Unlock()
			}
			if err := send(ctx, e); err != nil {
				if await {
					o.mu.Lock()
					delete(o.awaiting, e.ID)
					o.mu.Unlock()
				}
				switch {
				case errors.Is(err, ErrUndeliverable):
					o.dropUndeliverable(e, err)
					continue
				case errors.Is(err, ErrNotReady):
					// Released after the batch, whose others go on now;
					// the round ends there (claimed again at once, the
					// entry would come first again).
					notReady = append(notReady, e.ID)
					continue
				}
				// Not handed over (no connection here): let another
				// instance, which may hold one, take these now.
				ids := make([]string, 0, len(batch)-i+len(notReady))
				ids = append(ids, notReady...)
				for _, r := range batch[i:] {
					ids = append(ids, r.ID)
				}
				if err := o.shared.ReleaseOutbox(o.owner, ids); err != nil {
					o.log.Error("outbox: release claims", "err", err)
				}
				o.recordSent(done)
				return NotReadyDelay
			}
			if await {
				continue // sent once routed (routedShared); the claim stays ours till then
			}
			e.SentAt = o.clock()
			done = append(done, e)
		}
		o.recordSent(done)
		if len(notReady) > 0 {
			if err := o.shared.ReleaseOutbox(o.owner, notReady); err != nil {
				o.log.Error("outbox: release claims", "err", err)
			}
			return NotReadyDelay
		}
		if len(batch) < n {
			break
		}
	}
	return sharedPoll
}

// routedShared records the sends of the entries whose routing was
// confirmed, of those this instance still holds the claim on, in one
// transaction.
func (o *Outbox) routedShared(ids []string) {
	es := make([]OutboxEntry, 0, len(ids))
	o.mu.Lock()
	for _, id := range ids {
		if e, ok := o.awaiting[id]; ok {
			e.SentAt = o.clock()
			es = append(es, e)
		}
	}
	o.mu.Unlock()
	o.recordSent(es)
	// Only now, with the sends committed, do the entries stop counting
	// against SharedInFlight: removed before the commit, the claim loop
	// could take new claims while these were still claimed and not
	// recorded sent in the database (TestFailover saw 74 at the kill).
	o.mu.Lock()
	for _, e := range es {
		delete(o.awaiting, e.ID)
	}
	o.mu.Unlock()
	if len(es) > 0 {
		o.poke() // claims freed: the next ones may go
	}
}

// recordSent records sends on the shared store (one transaction) and
// reports them to the observer.
func (o *Outbox) recordSent(es []OutboxEntry) {
	if len(es) == 0 {
		return
	}
	got, err := o.shared.SentOutbox(o.owner, es)
	if err != nil {
		o.log.Error("outbox: record sends", "count", len(es), "first", es[0].ID, "err", err)
	} else if len(got) < len(es) {
		o.log.Debug("outbox: sent entries changed meanwhile (an error reply, or the claim expired)", "count", len(es)-len(got))
	}
	for _, e := range es {
		o.observe(OutboxSent, e, "")
	}
}

// unroutedShared releases the claims of every entry awaiting its routing
// confirmation: the connection went, and with it what the server had not
// routed; the next round (here or on another instance) sends them again.
func (o *Outbox) unroutedShared() {
	o.mu.Lock()
	ids := make([]string, 0, len(o.awaiting))
	for id := range o.awaiting {
		ids = append(ids, id)
	}
	clear(o.awaiting)
	o.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	if err := o.shared.ReleaseOutbox(o.owner, ids); err != nil {
		o.log.Error("outbox: release claims", "err", err)
	}
	o.log.Info("outbox: notifications handed over but not confirmed will be sent again", "count", len(ids))
	o.poke()
}
