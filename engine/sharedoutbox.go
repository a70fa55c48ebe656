package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	// SentOutbox records e's send (PutOutbox) if owner still holds the
	// claim on it, and reports whether it did. A claim is gone when the
	// entry was changed meanwhile (an error reply rescheduled it) or the
	// lease ran out.
	SentOutbox(owner string, e OutboxEntry) (bool, error)
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
		batch, err := o.shared.ClaimOutbox(o.owner, o.clock(), sharedBatch)
		if err != nil {
			o.log.Error("outbox: claim", "err", err)
			return time.Second
		}
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
				// Not handed over (no connection here): let another
				// instance, which may hold one, take these now.
				ids := make([]string, 0, len(batch)-i)
				for _, r := range batch[i:] {
					ids = append(ids, r.ID)
				}
				if err := o.shared.ReleaseOutbox(o.owner, ids); err != nil {
					o.log.Error("outbox: release claims", "err", err)
				}
				return 200 * time.Millisecond
			}
			if await {
				continue // sent once routed (routedShared); the claim stays ours till then
			}
			e.SentAt = o.clock()
			if ok, err := o.shared.SentOutbox(o.owner, e); err != nil {
				o.log.Error("outbox: record send", "id", e.ID, "err", err)
			} else if !ok {
				o.log.Debug("outbox: sent entry changed meanwhile (an error reply, or the claim expired)", "id", e.ID)
			}
			o.observe(OutboxSent, e, "")
		}
		if len(batch) < sharedBatch {
			break
		}
	}
	return sharedPoll
}

// routedShared records the send of an entry whose routing was confirmed,
// if this instance still holds its claim.
func (o *Outbox) routedShared(id string) {
	o.mu.Lock()
	e, ok := o.awaiting[id]
	delete(o.awaiting, id)
	o.mu.Unlock()
	if !ok {
		return
	}
	e.SentAt = o.clock()
	if ok, err := o.shared.SentOutbox(o.owner, e); err != nil {
		o.log.Error("outbox: record send", "id", e.ID, "err", err)
	} else if !ok {
		o.log.Debug("outbox: routed entry changed meanwhile (an error reply, or the claim expired)", "id", e.ID)
	}
	o.observe(OutboxSent, e, "")
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
