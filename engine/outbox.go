package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/push2/push2/engine/stanza"
)

// RetryPolicy says how the outbox treats push service errors (push2.md
// "Transient delivery errors"; DESIGN.md "Delivery and state"). A zero
// field takes its default from DefaultConfig.
type RetryPolicy struct {
	// MaxAttempts is the most sends of one notification, the first
	// included.
	MaxAttempts int
	// BaseDelay and MaxDelay bound the exponential back-off between
	// attempts (each wait is drawn from [d/2, d], d doubling from
	// BaseDelay).
	BaseDelay, MaxDelay time.Duration
	// MaxAge: a notification older than this is not retried.
	MaxAge time.Duration
	// ErrorWindow: a sent notification that got no error reply for this
	// long counts as delivered. XMPP messages have no
	// success reply, so this is the only success signal there is.
	ErrorWindow time.Duration
	// MaxErrors failed notifications in a row disable a registration
	// (like push_max_errors).
	MaxErrors int
	// DisableAfter: a registration whose notifications have been failing
	// for this long, with no delivery in between, is disabled.
	DisableAfter time.Duration
}

// Conditions that say "later" whatever the error type. Push services do not
// use the type attribute consistently; a rate limit or an overloaded
// upstream is transient even when typed cancel.
var transientConditions = map[stanza.Condition]bool{
	stanza.CondResourceConstraint:  true,
	stanza.CondRemoteServerTimeout: true,
}

// Conditions that say "never", even when typed wait: retrying cannot make
// an unknown device known or a refused sender accepted.
var permanentConditions = map[stanza.Condition]bool{
	stanza.CondItemNotFound:          true,
	stanza.CondNotAuthorized:         true,
	stanza.CondForbidden:             true,
	stanza.CondRegistrationRequired:  true,
	stanza.CondBadRequest:            true,
	stanza.CondNotAcceptable:         true,
	stanza.CondGone:                  true,
	stanza.CondFeatureNotImplemented: true,
	stanza.CondServiceUnavailable:    true,
	stanza.CondJIDMalformed:          true,
	stanza.CondRemoteServerNotFound:  true,
}

// retryable reports whether an error reply of this type and condition is
// retried: type wait (push2.md: SHOULD be retried) unless the condition is
// permanent, or a transient condition whatever the type. Other errors MUST
// NOT be retried.
func retryable(errType stanza.ErrorType, condition stanza.Condition) bool {
	if transientConditions[condition] {
		return true
	}
	return errType == stanza.Wait && !permanentConditions[condition]
}

// Sender hands a notification to the XMPP server. An error means it could
// not be handed over, no attempt counted:
//   - one wrapping ErrUndeliverable: it never can be (its stored form is
//     not XML, its account not a JID); the entry is dropped (OutboxDropped);
//   - one wrapping ErrNotReady: its destination is not ready while others
//     may be; the entry is tried again after a delay that doubles from
//     NotReadyDelay to NotReadyMaxDelay, and the round goes on with the next;
//   - any other (not connected): the round ends, and the entry is tried
//     again first in NotReadyDelay.
type Sender func(ctx context.Context, e OutboxEntry) error

// ErrUndeliverable and ErrNotReady classify a Sender's errors (see Sender).
var (
	ErrUndeliverable = errors.New("the notification cannot be handed to the server")
	ErrNotReady      = errors.New("the notification's destination is not ready")
)

// NotReadyDelay and NotReadyMaxDelay bound how soon an entry that could not
// be handed over is tried again.
const (
	NotReadyDelay    = 200 * time.Millisecond
	NotReadyMaxDelay = 5 * time.Second
)

// OutboxEvent is reported to the outbox's observer (metrics, logs).
type OutboxEvent string

// Outbox events.
const (
	OutboxSent      OutboxEvent = "sent"      // handed to the server
	OutboxDelivered OutboxEvent = "delivered" // no error within the error window
	OutboxRetry     OutboxEvent = "retry"     // a retryable error; scheduled again
	OutboxDropped   OutboxEvent = "dropped"   // given up: permanent error, or retries exhausted
	OutboxDisabled  OutboxEvent = "disabled"  // the registration was disabled for failing
)

// Outbox is the persistent delivery queue. A notification accepted by
// Evaluate is in the store before Evaluate returns and stays there until it
// is delivered or given up on, so a crash loses none (a notification sent
// just before a crash may be sent again after it: delivery is
// at-least-once).
//
// The outbox owns the store's outbox entries and error accounting; it
// reaches the engine only through the disable function it was given, which
// keeps the engine's registration cache coherent. Run also applies the
// dedupe retention (Config.DedupeRetention).
type Outbox struct {
	store     Store
	pol       RetryPolicy
	clock     func() time.Time
	log       *slog.Logger
	retention time.Duration
	disable   func(RegKey, DisabledRecord) error
	// refresh, if set, renews an expiring credential in the entry's
	// stanza before it is sent (Engine.refreshEntry).
	refresh func(ctx context.Context, e *OutboxEntry)

	mu      sync.Mutex
	entries map[string]*item
	waiting queue // pending, not yet due, by Due
	ready   queue // pending and due, by Created
	sent    queue // awaiting the end of their error window, by SentAt
	handed  queue // handed over, awaiting the server's routing confirmation
	loaded  bool
	wake    chan struct{}

	// shared is the store as a SharedOutbox, if it is one (several engines
	// on one store); owner names this outbox in its claims.
	shared SharedOutbox
	owner  string
	// awaiting: on a SharedOutbox, the entries handed over whose routing
	// confirmation (AwaitRouted) is awaited; their claims are kept until
	// Routed records the send (o.mu).
	awaiting map[string]OutboxEntry
	// sweepEvery is how often the periodic sweeps run (Config.SweepEvery);
	// sweeper runs them while Run runs (o.mu guards the pointer).
	sweepEvery time.Duration
	sweeper    *sweeper

	// Observe, if set, is called for every event; detail is the error
	// condition where there is one. It must not block.
	Observe func(ev OutboxEvent, e OutboxEntry, detail string)

	// AwaitRouted, if set, is asked after each successful hand-over
	// whether the server will confirm that it routed the notification
	// (push2d: the bridge of the account's domain said it does). Such a
	// notification counts as sent only on Routed; until then it is kept
	// (in memory, so a restart sends it again), and Unrouted (the
	// connection was lost) or RouteTimeout without a confirmation sends it
	// again. Set it before Run.
	AwaitRouted func(e OutboxEntry) bool
}

// RouteTimeout is how long a notification handed to a server that confirms
// routing may wait for the confirmation before it is sent again.
const RouteTimeout = 30 * time.Second

// pruneEvery is how often Run forgets dedupe marks past the retention, by
// default (Config.SweepEvery).
const pruneEvery = time.Hour

func newOutbox(store Store, cfg Config, disable func(RegKey, DisabledRecord) error) *Outbox {
	pol := cfg.Retry
	pol.fill()
	o := &Outbox{
		store: store, pol: pol, clock: cfg.Clock, log: cfg.Logger, retention: cfg.DedupeRetention, disable: disable,
		entries:    map[string]*item{},
		waiting:    queue{before: byDue},
		ready:      queue{before: byCreated},
		sent:       queue{before: bySent},
		handed:     queue{before: bySent},
		wake:       make(chan struct{}, 1),
		sweepEvery: cfg.SweepEvery,
	}
	if o.sweepEvery <= 0 {
		o.sweepEvery = pruneEvery
	}
	if sh, ok := store.(SharedOutbox); ok {
		o.shared, o.owner = sh, newOwner()
	}
	return o
}

// Policy returns the effective retry policy.
func (o *Outbox) Policy() RetryPolicy { return o.pol }

// load reads the store's entries once; o.mu must be held. An entry added
// before the load (accepted before Run started) is not read twice.
func (o *Outbox) load() error {
	if o.loaded {
		return nil
	}
	err := o.store.ForEachOutbox(func(e OutboxEntry) error {
		if _, ok := o.entries[e.ID]; !ok {
			o.enqueue(&item{e: e})
		}
		return nil
	})
	if err == nil {
		o.loaded = true
	}
	return err
}

// enqueue files it by its state; o.mu must be held.
func (o *Outbox) enqueue(it *item) {
	o.entries[it.e.ID] = it
	if it.e.SentAt.IsZero() {
		o.waiting.push(it)
	} else {
		o.sent.push(it)
	}
}

// add takes an entry the engine has just stored. Its id is new (random),
// so an entry the outbox already has under it is that same record, loaded
// from the store by a Run that started between the store write and add —
// possibly already in flight. It stays as it is: replacing it would send
// the notification twice.
func (o *Outbox) add(e OutboxEntry) {
	if o.shared != nil {
		o.poke() // in the store already; the next round claims it
		return
	}
	o.mu.Lock()
	if _, ok := o.entries[e.ID]; ok {
		o.mu.Unlock()
		return
	}
	o.enqueue(&item{e: e})
	o.mu.Unlock()
	o.poke()
}

func (o *Outbox) poke() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Len returns the number of notifications in the outbox (pending or
// awaiting their error window).
func (o *Outbox) Len() int {
	if o.shared != nil {
		n, err := o.shared.OutboxLen()
		if err != nil {
			o.log.Error("outbox: count", "err", err)
		}
		return n
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.load(); err != nil {
		o.log.Error("outbox: load", "err", err)
	}
	return len(o.entries)
}

func (o *Outbox) observe(ev OutboxEvent, e OutboxEntry, detail string) {
	if o.Observe != nil {
		o.Observe(ev, e, detail)
	}
}

// Run delivers until ctx ends: due entries are sent in creation order, sent
// entries past their error window are counted delivered. It also applies
// the dedupe retention: when it starts and every hour, it forgets dedupe
// marks older than Config.DedupeRetention (Store.PruneMarks).
//
// On a SharedOutbox store (several instances) Run claims due entries from
// the store before sending each (sharedoutbox.go), so that one instance at
// a time sends a notification, whichever instance decided it.
func (o *Outbox) Run(ctx context.Context, send Sender) error {
	if o.shared != nil {
		return o.runShared(ctx, send)
	}
	o.mu.Lock()
	err := o.load()
	o.mu.Unlock()
	if err != nil {
		return fmt.Errorf("outbox: load: %w", err)
	}
	defer o.startSweeps(ctx)()
	for {
		next := o.step(ctx, send)
		t := time.NewTimer(max(time.Until(next), 5*time.Millisecond))
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

// startSweeps runs the periodic sweeps (sweep.go) until ctx ends, the
// first one now; the returned function waits for the end.
func (o *Outbox) startSweeps(ctx context.Context) func() {
	s := newSweeper(o)
	o.mu.Lock()
	o.sweeper = s
	o.mu.Unlock()
	return s.start(ctx)
}

// prune forgets dedupe marks older than the retention.
func (o *Outbox) prune() {
	n, err := o.store.PruneMarks(o.clock().Add(-o.retention))
	if err != nil {
		o.log.Warn("outbox: prune dedupe records", "err", err)
	} else if n > 0 {
		o.log.Debug("outbox: pruned dedupe records", "count", n, "retention", o.retention)
	}
}

// step does one round and returns when the next one is due.
func (o *Outbox) step(ctx context.Context, send Sender) time.Time {
	now := o.clock()
	var done []OutboxEntry
	o.mu.Lock()
	for it := o.waiting.top(); it != nil && !it.e.Due.After(now); it = o.waiting.top() {
		o.ready.push(o.waiting.pop())
	}
	for it := o.handed.top(); it != nil && !it.e.SentAt.Add(RouteTimeout).After(now); it = o.handed.top() {
		o.handed.pop()
		o.unhand(it)
	}
	for it := o.sent.top(); it != nil && !it.e.SentAt.Add(o.pol.ErrorWindow).After(now); it = o.sent.top() {
		o.sent.pop()
		delete(o.entries, it.e.ID)
		done = append(done, it.e)
	}
	o.mu.Unlock()
	for _, e := range done {
		o.delivered(e)
	}
	for ctx.Err() == nil {
		o.mu.Lock()
		it := o.ready.top()
		if it == nil {
			o.mu.Unlock()
			break
		}
		o.ready.pop() // in flight: in no queue
		e := it.e
		o.mu.Unlock()
		e.Attempts++
		if o.refresh != nil {
			o.refresh(ctx, &e)
		}
		if err := send(ctx, e); err != nil {
			switch {
			case errors.Is(err, ErrUndeliverable):
				o.dropUndeliverable(e, err)
				continue
			case errors.Is(err, ErrNotReady):
				// Only this destination waits: the others go on.
				o.mu.Lock()
				if o.entries[e.ID] == it && it.q == nil {
					it.e.Due = now.Add(min(NotReadyDelay<<min(it.deferred, 8), NotReadyMaxDelay))
					it.deferred++
					o.waiting.push(it)
				}
				o.mu.Unlock()
				continue
			}
			// Not handed over (no connection): try again soon, no attempt
			// counted.
			o.mu.Lock()
			if o.entries[e.ID] == it && it.q == nil {
				o.ready.push(it)
			}
			o.mu.Unlock()
			return now.Add(NotReadyDelay)
		}
		e.SentAt = o.clock()
		await := o.AwaitRouted != nil && o.AwaitRouted(e)
		o.mu.Lock()
		it.deferred = 0
		// Unless an error reply or a removal dealt with it meanwhile.
		current := o.entries[e.ID] == it && it.q == nil
		if current && await && !it.routed {
			// Sent only once the server says it routed it (Routed).
			it.e = e
			o.handed.push(it)
			o.mu.Unlock()
			continue
		}
		if current {
			it.routed = false
			it.e = e
			o.sent.push(it)
		}
		o.mu.Unlock()
		if current {
			if err := o.store.PutOutbox(e, false); err != nil {
				o.log.Error("outbox: record send", "id", e.ID, "err", err)
			}
		}
		o.observe(OutboxSent, e, "")
	}
	return o.nextRound(now)
}

// nextRound is when the next entry falls due or ends its error window (at
// most a second away).
func (o *Outbox) nextRound(now time.Time) time.Time {
	next := now.Add(time.Second)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ready.Len() > 0 {
		return now
	}
	if it := o.waiting.top(); it != nil {
		next = earliest(next, it.e.Due)
	}
	if it := o.sent.top(); it != nil {
		next = earliest(next, it.e.SentAt.Add(o.pol.ErrorWindow))
	}
	if it := o.handed.top(); it != nil {
		next = earliest(next, it.e.SentAt.Add(RouteTimeout))
	}
	return next
}

// unhand puts a handed-over notification that was not confirmed back in
// the ready queue, the attempt not counted; o.mu must be held and it must
// be in no queue.
func (o *Outbox) unhand(it *item) {
	it.e.SentAt = time.Time{}
	it.e.Attempts = max(it.e.Attempts-1, 0)
	o.ready.push(it)
}

// Routed records the server's confirmation that it routed notification
// id to its push service (AwaitRouted): the notification counts as sent
// from now on (its error window starts). An id that is not waiting for a
// confirmation is ignored.
func (o *Outbox) Routed(id string) {
	o.RoutedAll([]string{id})
}

// RoutedAll is Routed for a batch of confirmations (the bridge's
// <routed/>): their sends are recorded in one write where the store can
// (OutboxBatcher; one commit per confirmation was a twentieth of push2d's
// CPU per pushed message through Prosody, issue 12 goal 2); on a shared
// store in one transaction, which keeps the window in which a
// notification the server routed is not yet recorded as sent (and would be
// sent again by another instance if this one died) to one commit.
func (o *Outbox) RoutedAll(ids []string) {
	if o.shared != nil {
		o.routedShared(ids)
		return
	}
	var sent []OutboxEntry
	o.mu.Lock()
	for _, id := range ids {
		it, ok := o.entries[id]
		if !ok || (it.q != nil && it.q != &o.handed) {
			continue
		}
		if it.q == nil {
			// Still being handed over: step files it as sent.
			it.routed = true
			continue
		}
		unqueue(it)
		it.e.SentAt = o.clock()
		o.sent.push(it)
		sent = append(sent, it.e)
	}
	o.mu.Unlock()
	if len(sent) == 0 {
		return
	}
	if b, ok := o.store.(OutboxBatcher); ok && len(sent) > 1 {
		if err := b.PutOutboxes(sent); err != nil {
			o.log.Error("outbox: record sends", "count", len(sent), "err", err)
		}
	} else {
		for _, e := range sent {
			if err := o.store.PutOutbox(e, false); err != nil {
				o.log.Error("outbox: record send", "id", e.ID, "err", err)
			}
		}
	}
	for _, e := range sent {
		o.observe(OutboxSent, e, "")
	}
	o.poke()
}

// Unrouted sends again every notification handed over and not confirmed:
// the connection to the server was lost, and with it whatever the server
// had not routed.
func (o *Outbox) Unrouted() {
	if o.shared != nil {
		o.unroutedShared()
		return
	}
	o.mu.Lock()
	n := o.handed.Len()
	for o.handed.Len() > 0 {
		o.unhand(o.handed.pop())
	}
	o.mu.Unlock()
	if n > 0 {
		o.log.Info("outbox: notifications handed over but not confirmed will be sent again", "count", n)
		o.poke()
	}
}

// remove forgets entry id, in memory and in the store.
func (o *Outbox) remove(id string) {
	o.mu.Lock()
	if it, ok := o.entries[id]; ok {
		unqueue(it)
		delete(o.entries, id)
	}
	o.mu.Unlock()
	if err := o.store.DeleteOutbox(id); err != nil {
		o.log.Error("outbox: delete", "id", id, "err", err)
	}
}

// dropUndeliverable drops an entry the Sender can never hand over
// (ErrUndeliverable): tried again it would fail again, first in line
// before every other notification.
func (o *Outbox) dropUndeliverable(e OutboxEntry, err error) {
	o.log.Warn("outbox: dropped a notification that cannot be handed over", "id", e.ID, "account", e.Account, "err", err)
	o.remove(e.ID)
	o.observe(OutboxDropped, e, "undeliverable")
}

// delivered: no error came back within the window. The registration's
// error account starts over.
func (o *Outbox) delivered(e OutboxEntry) {
	o.remove(e.ID)
	k := e.Key()
	st, err := o.store.RegState(k)
	if err != nil {
		o.log.Error("outbox: read error state", "account", k.Account, "id", k.ID, "err", err)
	} else if st.Errors > 0 {
		if err := o.store.PutRegState(k, RegState{}); err != nil {
			o.log.Error("outbox: reset error state", "account", k.Account, "id", k.ID, "err", err)
		}
	}
	o.observe(OutboxDelivered, e, "")
}

// Errors for delivery reports that do not count (DeliveryError, Confirm).
var (
	// ErrUnknownNotification: no notification with that id is waiting for
	// a report (delivered long ago, given up, or never ours).
	ErrUnknownNotification = errors.New("no pending notification has this id")
	// ErrNotFromService: the report does not come from the push service
	// the notification was sent to.
	ErrNotFromService = errors.New("the report does not come from the notification's push service")
)

// fromService reports whether a report's sender is the service the
// notification was addressed to, comparing bare JIDs: a push service may
// answer from any resource, but only the service itself may speak for its
// notifications (anyone who can send a stanza to the user's server can
// send an error with a notification's id).
func fromService(from, to string) bool {
	f, err := NormalizeJID(from)
	if err != nil {
		return false
	}
	t, err := NormalizeJID(to)
	return err == nil && f.Bare().Equal(t.Bare())
}

// report returns the entry a delivery report from sender from is about, or
// why the report does not count.
func (o *Outbox) report(id, from string) (OutboxEntry, error) {
	e, ok := o.get(id)
	if !ok {
		return e, ErrUnknownNotification
	}
	if !fromService(from, e.To) {
		return e, ErrNotFromService
	}
	return e, nil
}

// DeliveryError handles a push service's error reply to notification id,
// sent by from. It reports whether the notification will be retried. A
// report that does not count (ErrUnknownNotification, ErrNotFromService)
// changes nothing.
func (o *Outbox) DeliveryError(id, from, errType, condition string) (retry bool, err error) {
	e, err := o.report(id, from)
	if err != nil {
		o.log.Info("outbox: error reply ignored", "id", id, "from", from, "type", errType, "condition", condition, "why", err)
		return false, err
	}
	// The service answered: the notification was routed, even if the
	// confirmation has not come yet.
	o.Routed(id)
	now := o.clock()
	e.LastErr = errType + "/" + condition
	if retryable(stanza.ErrorType(errType), stanza.Condition(condition)) && e.Attempts < o.pol.MaxAttempts && now.Sub(e.Created) < o.pol.MaxAge {
		d := o.pol.BaseDelay << min(e.Attempts-1, 30)
		if d > o.pol.MaxDelay || d <= 0 {
			d = o.pol.MaxDelay
		}
		e.Due = now.Add(d/2 + rand.N(d/2+1))
		e.SentAt = time.Time{}
		o.mu.Lock()
		if it, ok := o.entries[id]; ok {
			unqueue(it)
			it.e = e
			it.routed = false // the next attempt waits for its own confirmation
			o.waiting.push(it)
		}
		o.mu.Unlock()
		if err := o.store.PutOutbox(e, true); err != nil {
			o.log.Error("outbox: reschedule", "id", id, "err", err)
		}
		o.observe(OutboxRetry, e, condition)
		o.poke()
		return true, nil
	}
	o.remove(id)
	o.observe(OutboxDropped, e, condition)
	o.fail(e, condition, now)
	return false, nil
}

// fail counts a failed notification against its registration and disables
// the registration when it keeps failing.
func (o *Outbox) fail(e OutboxEntry, condition string, now time.Time) {
	k := e.Key()
	st, err := o.store.RegState(k)
	if err != nil {
		o.log.Error("outbox: read error state", "account", k.Account, "id", k.ID, "err", err)
		return
	}
	st.Errors++
	if st.FirstError.IsZero() {
		st.FirstError = now
	}
	st.LastCondition = condition
	reason := ""
	switch {
	case stanza.Condition(condition) == stanza.CondGone:
		// RFC 6120 §8.3.3.5: the recipient is no longer at this address.
		// A Web Push service says so (410, docs/relay.md) for an expired
		// or removed subscription: no later notification can succeed.
		reason = "the push service says the registration is gone"
	case st.Errors >= o.pol.MaxErrors:
		reason = fmt.Sprintf("%d notifications in a row failed (max %d)", st.Errors, o.pol.MaxErrors)
	case now.Sub(st.FirstError) >= o.pol.DisableAfter:
		reason = fmt.Sprintf("notifications have failed for %s with no delivery", now.Sub(st.FirstError).Round(time.Minute))
	}
	if reason == "" {
		if err := o.store.PutRegState(k, st); err != nil {
			o.log.Error("outbox: write error state", "account", k.Account, "id", k.ID, "err", err)
		}
		return
	}
	rec := DisabledRecord{Account: k.Account, ID: k.ID, At: now, Reason: reason, Errors: st.Errors, FirstError: st.FirstError, LastCondition: condition, Service: e.To}
	if err := o.disable(k, rec); err != nil {
		o.log.Error("outbox: disable", "account", k.Account, "id", k.ID, "err", err)
		return
	}
	o.log.Warn("registration disabled: its push service keeps failing", "account", k.Account, "id", k.ID, "service", e.To, "reason", reason, "last_condition", condition)
	o.observe(OutboxDisabled, e, condition)
}

// Confirm records a positive delivery report for notification id from its
// service from (the XEP-0357 publish is an IQ, whose result says the app
// server took it): the notification is delivered now rather than after the
// error window. A report that does not count (ErrUnknownNotification,
// ErrNotFromService) changes nothing.
func (o *Outbox) Confirm(id, from string) error {
	e, err := o.report(id, from)
	if err != nil {
		return err
	}
	o.Routed(id)
	o.delivered(e)
	return nil
}

// get returns a copy of entry id.
func (o *Outbox) get(id string) (OutboxEntry, bool) {
	if o.shared != nil {
		e, ok, err := o.shared.GetOutbox(id)
		if err != nil {
			o.log.Error("outbox: read entry", "id", id, "err", err)
		}
		return e, ok
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.load(); err != nil {
		o.log.Error("outbox: load", "err", err)
	}
	if it, ok := o.entries[id]; ok {
		return it.e, true
	}
	return OutboxEntry{}, false
}
