// Package engine is the Push 2.0 (urn:xmpp:push2:0) decision pipeline as a
// plain Go library: registrations (push2.md "Client registers to receive push
// notifications", "Client disables future pushes"), the profile interfaces
// and registry ("Match and send profiles"), filters and grace, priority,
// dedupe and the notification stanza. It has no network code, so any Go XMPP
// server can embed it; push2d is one host of it.
//
// The pipeline, in the order a stanza goes through it:
//
//	registration → match profile → filters → grace → dedupe → send profile → notification
package engine

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/engine/stanza"

	"mellium.im/xmpp/jid"
)

// Config holds the engine's operator settings.
type Config struct {
	Limits Limits
	// MaxRegistrations per account; the oldest is evicted when a new one
	// would exceed it (like mod_cloud_notify's push_max_devices). Default 5.
	MaxRegistrations int
	// NotificationLimit is the largest notification stanza, in bytes, as
	// serialized. push2.md: 4096, "some implementations may wish to restrict
	// this even more". Values above 4096 are lowered to 4096.
	NotificationLimit int
	// DedupeRetention is how long the engine remembers that a registration
	// got a push for a stanza. Default 7 days: a stanza can reach the
	// engine again when a hibernated session's queue goes to offline
	// storage, up to the hibernation limit (72 h by default) later.
	DedupeRetention time.Duration
	// Retry is the outbox's error policy.
	Retry  RetryPolicy
	Clock  func() time.Time
	Logger *slog.Logger
}

func (c *Config) fill() {
	if c.Limits == (Limits{}) {
		c.Limits = DefaultLimits
	}
	if c.MaxRegistrations <= 0 {
		c.MaxRegistrations = 5
	}
	if c.NotificationLimit <= 0 || c.NotificationLimit > 4096 {
		c.NotificationLimit = 4096
	}
	if c.DedupeRetention <= 0 {
		c.DedupeRetention = 7 * 24 * time.Hour
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Engine evaluates stanzas against registrations. It is safe for concurrent
// use.
type Engine struct {
	cfg      Config
	store    Store
	registry *Registry
	activity *Activity
	outbox   *Outbox

	mu    sync.Mutex
	cache map[string][]*Registration // account → parsed registrations, oldest first
	// gen counts invalidations per account (and all of them, for profile
	// swaps): a reader fills the cache only if no invalidation happened
	// since it started reading the store, so a stale list never sticks.
	gen     map[string]uint64
	genAll  uint64
	writing map[string]int // writes in progress per account
}

// New returns an engine on store with the profiles in registry.
func New(store Store, registry *Registry, cfg Config) *Engine {
	cfg.fill()
	e := &Engine{
		cfg:      cfg,
		store:    store,
		registry: registry,
		activity: NewActivity(cfg.Limits.MaxGrace),
		cache:    map[string][]*Registration{},
		gen:      map[string]uint64{},
		writing:  map[string]int{},
	}
	e.outbox = newOutbox(e, cfg.Retry)
	// A profile swap can change validation and Prepare results: re-parse
	// registrations lazily with the new profiles.
	registry.Subscribe(func([]ProfileInfo) {
		e.mu.Lock()
		e.cache = map[string][]*Registration{}
		e.genAll++
		e.mu.Unlock()
	})
	return e
}

// Outbox returns the engine's delivery queue. The host runs it
// (Outbox.Run) with a Sender that hands notifications to the server.
func (e *Engine) Outbox() *Outbox { return e.outbox }

// Disabled lists the account's registrations that the engine disabled
// because their push service kept failing, with the reason.
func (e *Engine) Disabled(account string) ([]DisabledRecord, error) {
	j, err := NormalizeJID(account)
	if err != nil {
		return nil, badRequest("the account is not a valid JID")
	}
	return e.store.Disabled(j.Bare().String())
}

// Registry returns the engine's profile registry.
func (e *Engine) Registry() *Registry { return e.registry }

// Config returns the effective configuration.
func (e *Engine) Config() Config { return e.cfg }

// Enable validates and stores a registration for the session identified by
// id (the SASL2 client id, else the resource). On error nothing is stored and
// the error is a *StanzaError. Re-enabling with the same id replaces the
// registration. The registration is durable when Enable returns.
func (e *Engine) Enable(ctx context.Context, account, id string, enable *stanza.Element) (*Registration, []RegKey, error) {
	r, err := ParseEnable(e.registry, e.cfg.Limits, account, id, enable)
	if err != nil {
		return nil, nil, err
	}
	if err := e.checkFits(r); err != nil {
		return nil, nil, err
	}
	r.Created = e.cfg.Clock()
	stored := StoredRegistration{Account: r.Account, ID: r.ID, Created: r.Created, Enable: enable.String()}
	done := e.changing(r.Account)
	evicted, err := e.store.PutRegistration(stored, e.cfg.MaxRegistrations)
	done()
	if err != nil {
		e.cfg.Logger.Error("store registration", "account", r.Account, "id", r.ID, "err", err)
		return nil, nil, &StanzaError{Type: "wait", Condition: CondInternalServerError, Text: "could not store the registration"}
	}
	for _, k := range evicted {
		e.cfg.Logger.Info("registration evicted: too many devices", "account", k.Account, "id", k.ID, "max", e.cfg.MaxRegistrations)
	}
	return r, evicted, nil
}

// checkFits asks send profiles that can tell (FitChecker) whether their
// output fits the notification limit for this registration.
func (e *Engine) checkFits(r *Registration) error {
	for _, m := range r.Matches {
		sp, ok := e.registry.Send(m.SendNS)
		if !ok {
			continue
		}
		fc, ok := sp.(FitChecker)
		if !ok {
			continue
		}
		// The largest envelope this registration can get: the longest
		// priority and <voip/>.
		msg := stanza.NewElement(stanza.NSClient, "message", "to", r.Service, "from", domainOf(r.Account), "id", notificationID(r.Key(), []string{""}))
		notif := stanza.NewElement(stanza.NSPush2, "notification")
		notif.Append(stanza.NewElement(stanza.NSPush2, "client").WithText(r.Client), stanza.NewElement(stanza.NSPush2, "priority").WithText(PriorityNormal.String()), stanza.NewElement(stanza.NSPush2, "voip"))
		msg.Append(notif)
		budget := e.cfg.NotificationLimit - msg.Size()
		if err := fc.Fits(m.Prepared, r.Account, budget); err != nil {
			return badRequest("<send xmlns='%s'/>: %s (notification limit %d bytes)", m.SendNS, err.Error(), e.cfg.NotificationLimit)
		}
	}
	return nil
}

// Disable removes the registration of session id (push2.md "Client disables
// future pushes"). Disabling a session without a registration succeeds.
func (e *Engine) Disable(ctx context.Context, account, id string) (bool, error) {
	acct, err := NormalizeJID(account)
	if err != nil || acct.Localpart() == "" {
		return false, badRequest("the account is not a valid bare JID")
	}
	if id == "" {
		return false, badRequest("the session has neither a SASL2 client id nor a resource")
	}
	k := RegKey{Account: acct.Bare().String(), ID: id}
	done := e.changing(k.Account)
	ok, err := e.store.DeleteRegistration(k)
	done()
	if err != nil {
		e.cfg.Logger.Error("delete registration", "account", k.Account, "id", k.ID, "err", err)
		return false, &StanzaError{Type: "wait", Condition: CondInternalServerError, Text: "could not remove the registration"}
	}
	return ok, nil
}

// Remove deletes a registration for a reason other than the client's
// <disable/> (the operator, or delivery that keeps failing).
func (e *Engine) Remove(k RegKey, reason string) (bool, error) {
	done := e.changing(k.Account)
	ok, err := e.store.DeleteRegistration(k)
	done()
	if err == nil {
		if ok {
			e.cfg.Logger.Info("registration removed", "account", k.Account, "id", k.ID, "reason", reason)
		}
	}
	return ok, err
}

// changing brackets a store write that changes the account's
// registrations: until the returned function is called, readers bypass the
// cache (they see whatever the store shows), and no list read before the
// write ends can be cached. Pebble makes a commit visible to readers a
// moment before Commit returns to the writer; without this a reader could
// cache, or be served, the old list in that moment.
func (e *Engine) changing(account string) (done func()) {
	e.mu.Lock()
	delete(e.cache, account)
	e.gen[account]++
	e.writing[account]++
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.cache, account)
		e.gen[account]++
		if e.writing[account]--; e.writing[account] == 0 {
			delete(e.writing, account)
		}
		e.mu.Unlock()
	}
}

// Registrations returns the account's registrations, oldest first, parsed
// with the current profiles. A stored registration that no longer parses
// (its profile was unloaded, say) is skipped and logged; it stays stored and
// comes back when the profile does.
func (e *Engine) Registrations(account string) ([]*Registration, error) {
	acct, err := NormalizeJID(account)
	if err != nil {
		return nil, badRequest("the account is not a valid JID")
	}
	account = acct.Bare().String()
	e.mu.Lock()
	regs, ok := e.cache[account]
	gen, genAll := e.gen[account], e.genAll
	e.mu.Unlock()
	// A write in progress empties the cache and, until it ends, keeps it
	// empty (see changing).
	if ok {
		return regs, nil
	}
	stored, err := e.store.Registrations(account)
	if err != nil {
		return nil, err
	}
	regs = make([]*Registration, 0, len(stored))
	for _, s := range stored {
		r, err := e.load(s)
		if err != nil {
			e.cfg.Logger.Warn("stored registration not usable with the loaded profiles", "account", s.Account, "id", s.ID, "err", err)
			continue
		}
		regs = append(regs, r)
	}
	e.mu.Lock()
	if e.gen[account] == gen && e.genAll == genAll && e.writing[account] == 0 {
		e.cache[account] = regs
	}
	e.mu.Unlock()
	return regs, nil
}

func (e *Engine) load(s StoredRegistration) (*Registration, error) {
	el, err := stanza.Parse([]byte(s.Enable))
	if err != nil {
		return nil, err
	}
	r, err := ParseEnable(e.registry, e.cfg.Limits, s.Account, s.ID, el)
	if err != nil {
		return nil, err
	}
	r.Created = s.Created
	return r, nil
}

// NoteActivity records that session id of account did something a user does
// (sent a message, a chat state…), for <grace/>.
func (e *Engine) NoteActivity(account, id string, at time.Time) {
	if j, err := NormalizeJID(account); err == nil {
		e.activity.Note(j.Bare().String(), id, at)
	}
}

// Event is one stanza that some registrations' devices would miss.
type Event struct {
	Stanza  *stanza.Element
	Context Context
	// Registrations restricts the evaluation to these registration ids: the
	// ones whose session is not live. Nil means every registration of the
	// account.
	Registrations []string
}

// Notification is a push ready to be sent: a <message/> to the push
// service.
type Notification struct {
	Reg      RegKey
	To       string
	ID       string // the message id, stable for a registration and stanza
	Priority Priority
	VoIP     bool
	Stanza   *stanza.Element // <message to=… id=…><notification xmlns='urn:xmpp:push2:0'>…
}

// Outcome says what happened to one registration, for --explain, metrics
// and logs.
type Outcome struct {
	Reg     RegKey
	Profile string // the match profile that decided, if any
	Pushed  bool
	Code    OutcomeCode // a small fixed set, for metrics labels
	Reason  string      // why (not), for people: "filter: room@muc is muted"…
}

// OutcomeCode classifies an Outcome.
type OutcomeCode string

// Outcome codes.
const (
	OutcomePushed       OutcomeCode = "pushed"
	OutcomeNoMatch      OutcomeCode = "no-match"
	OutcomeFilter       OutcomeCode = "filter"
	OutcomeGrace        OutcomeCode = "grace"
	OutcomeDuplicate    OutcomeCode = "duplicate"
	OutcomeNotLoaded    OutcomeCode = "profile-not-loaded"
	OutcomeProfileError OutcomeCode = "profile-error"
	OutcomeStoreError   OutcomeCode = "store-error"
)

// Result is the answer to an Event.
type Result struct {
	Notifications []*Notification
	Outcomes      []Outcome
}

// Evaluate runs the pipeline for one event. Every notification it returns
// is already in the outbox (durably), where Outbox.Run delivers it. Errors of one profile fail only
// that registration's evaluation (recorded in Outcomes); Evaluate itself
// fails only for bad input or a store failure.
func (e *Engine) Evaluate(ctx context.Context, ev *Event) (*Result, error) {
	if ev.Stanza == nil {
		return nil, badRequest("no stanza")
	}
	acct, err := NormalizeJID(ev.Context.Account)
	if err != nil || acct.Localpart() == "" {
		return nil, badRequest("the account is not a valid bare JID")
	}
	c := ev.Context
	c.Account = acct.Bare().String()
	if c.Now.IsZero() {
		c.Now = e.cfg.Clock()
	}
	regs, err := e.Registrations(c.Account)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	if len(regs) == 0 {
		return res, nil
	}
	var only map[string]bool
	if ev.Registrations != nil {
		only = make(map[string]bool, len(ev.Registrations))
		for _, id := range ev.Registrations {
			only[id] = true
		}
	}
	facts := Inspect(ev.Stanza, &c)
	// The dedupe keys hash the stanza: computed only if some registration
	// gets a push.
	keys := sync.OnceValue(func() []string { return dedupeKeys(ev.Stanza, facts) })
	for _, r := range regs {
		if only != nil && !only[r.ID] {
			continue
		}
		out, n := e.evaluateOne(ctx, r, ev.Stanza, &c, facts, keys)
		res.Outcomes = append(res.Outcomes, out)
		if n != nil {
			res.Notifications = append(res.Notifications, n)
		}
	}
	return res, nil
}

func (e *Engine) evaluateOne(ctx context.Context, r *Registration, st *stanza.Element, c *Context, facts *Facts, lazyKeys func() []string) (Outcome, *Notification) {
	out := Outcome{Reg: r.Key(), Code: OutcomeNoMatch, Reason: "no match profile pushes this stanza"}
	var chosen *Match
	var decision Decision
	for _, m := range r.Matches {
		mp, ok := e.registry.Match(m.Profile)
		if !ok {
			out.Profile, out.Code, out.Reason = m.Profile, OutcomeNotLoaded, "match profile not loaded"
			continue
		}
		in := &MatchInput{Stanza: st, Match: m.Element, Context: c, facts: facts}
		d, err := mp.Match(ctx, in)
		if err != nil {
			e.cfg.Logger.Warn("match profile failed", "profile", m.Profile, "account", r.Account, "id", r.ID, "err", err)
			out.Profile, out.Code, out.Reason = m.Profile, OutcomeProfileError, "match profile error: "+err.Error()
			continue
		}
		out.Profile = m.Profile
		if !d.Push {
			out.Code, out.Reason = OutcomeNoMatch, orDefault(d.Reason, "not matched")
			continue
		}
		if reason, ok := applyFilters(m.Filters, facts); !ok {
			out.Code, out.Reason = OutcomeFilter, reason
			continue
		}
		if m.Grace > 0 && facts.Call != CallPropose && facts.Call != CallRetract {
			if e.activity.ActiveElsewhere(r.Account, r.ID, c.Now.Add(-m.Grace)) {
				out.Code, out.Reason = OutcomeGrace, fmt.Sprintf("grace: another session was active in the last %s", m.Grace)
				continue
			}
		}
		chosen, decision = m, d
		break
	}
	if chosen == nil {
		return out, nil
	}
	if decision.Priority == 0 {
		decision.Priority = PriorityNormal
	}
	keys := lazyKeys()
	n, err := e.build(ctx, r, chosen, st, c, facts, decision, keys)
	if err != nil {
		e.cfg.Logger.Warn("send profile failed", "profile", chosen.SendNS, "account", r.Account, "id", r.ID, "err", err)
		out.Code, out.Reason = OutcomeProfileError, "send profile error: "+err.Error()
		return out, nil
	}
	entry := OutboxEntry{ID: n.ID, Account: r.Account, Reg: r.ID, To: n.To, Stanza: string(n.Stanza.Marshal()), Created: c.Now, Due: c.Now}
	first, err := e.store.RecordPush(r.Key(), keys, c.Now, entry)
	if err != nil {
		e.cfg.Logger.Error("record push", "account", r.Account, "id", r.ID, "err", err)
		out.Code, out.Reason = OutcomeStoreError, "store error"
		return out, nil
	}
	if !first {
		out.Code, out.Reason = OutcomeDuplicate, "duplicate: this registration already got a push for this stanza"
		return out, nil
	}
	e.outbox.add(entry)
	out.Pushed, out.Code, out.Reason = true, OutcomePushed, "pushed ("+decision.Priority.String()+")"
	return out, n
}

// applyFilters implements push2.md line 33: a filter for the stanza's chat
// lets it through only on a mention or a reply, as its children say; a
// filter without children mutes the chat. Chats without a filter pass.
func applyFilters(filters []Filter, facts *Facts) (string, bool) {
	for _, f := range filters {
		if f.JID != facts.Chat {
			continue
		}
		switch {
		case f.Muted():
			return "filter: " + f.JID + " is muted", false
		case f.Mention && facts.Mention, f.Reply && facts.Reply:
			return "", true
		default:
			return "filter: " + f.JID + " pushes only " + filterWants(f), false
		}
	}
	return "", true
}

func filterWants(f Filter) string {
	switch {
	case f.Mention && f.Reply:
		return "mentions and replies"
	case f.Mention:
		return "mentions"
	default:
		return "replies"
	}
}

func (e *Engine) build(ctx context.Context, r *Registration, m *Match, st *stanza.Element, c *Context, facts *Facts, d Decision, keys []string) (*Notification, error) {
	sp, ok := e.registry.Send(m.SendNS)
	if !ok {
		return nil, fmt.Errorf("send profile %q not loaded", m.SendNS)
	}
	id := notificationID(r.Key(), keys)
	if sb, ok := sp.(StanzaBuilder); ok {
		st, err := sb.BuildStanza(ctx, &SendInput{Stanza: st, Context: c, Decision: d, Send: m.Send, Prepared: m.Prepared, Budget: e.cfg.NotificationLimit, facts: facts}, r, id)
		if err != nil {
			return nil, err
		}
		if size := st.Size(); size > e.cfg.NotificationLimit {
			return nil, fmt.Errorf("notification is %d bytes, over the %d-byte limit", size, e.cfg.NotificationLimit)
		}
		return &Notification{Reg: r.Key(), To: r.Service, ID: id, Priority: d.Priority, VoIP: d.VoIP, Stanza: st}, nil
	}
	msg := stanza.NewElement(stanza.NSClient, "message", "to", r.Service, "from", domainOf(r.Account), "id", id)
	notif := stanza.NewElement(stanza.NSPush2, "notification")
	notif.Append(
		stanza.NewElement(stanza.NSPush2, "client").WithText(r.Client),
		stanza.NewElement(stanza.NSPush2, "priority").WithText(d.Priority.String()),
	)
	if d.VoIP {
		notif.Append(stanza.NewElement(stanza.NSPush2, "voip"))
	}
	msg.Append(notif)
	budget := e.cfg.NotificationLimit - msg.Size()
	children, err := sp.Send(ctx, &SendInput{Stanza: st, Context: c, Decision: d, Send: m.Send, Prepared: m.Prepared, Budget: budget, facts: facts})
	if err != nil {
		return nil, err
	}
	notif.Append(children...)
	if size := msg.Size(); size > e.cfg.NotificationLimit {
		return nil, fmt.Errorf("notification is %d bytes, over the %d-byte limit", size, e.cfg.NotificationLimit)
	}
	return &Notification{Reg: r.Key(), To: r.Service, ID: id, Priority: d.Priority, VoIP: d.VoIP, Stanza: msg}, nil
}

// dedupeKeys names a stanza in every way a trigger may know it: the user's
// archive id (when this trigger knows it) and the stanza's identity: who
// sent it, its id attribute and a hash of its content without what servers
// add on the way (<stanza-id/>, <delay/>). Two reports of one stanza share
// at least the identity key. The content is part of the identity because
// ids are only unique if the sender makes them so: a client that counts
// from 1 again after a restart must not lose its messages' pushes.
func dedupeKeys(st *stanza.Element, f *Facts) []string {
	var keys []string
	if f.ArchiveID != "" {
		keys = append(keys, "a:"+f.ArchiveID)
	}
	h := sha256.New()
	stripped := f.Message.Clone()
	kept := stripped.Children[:0]
	for _, ch := range stripped.Children {
		if ch.Is(stanza.NSStanzaID, "stanza-id") || ch.Is(stanza.NSDelay, "delay") {
			continue // added by the server on the way; not part of identity
		}
		kept = append(kept, ch)
	}
	stripped.Children = kept
	h.Write(stripped.Marshal())
	keys = append(keys, fmt.Sprintf("s:%x", h.Sum(nil)[:16]))
	return keys
}

// notificationID is stable for a registration and a stanza, so a retried
// notification keeps its id and a push service can drop duplicates.
func notificationID(k RegKey, keys []string) string {
	h := sha256.Sum256([]byte(k.Account + "\x00" + k.ID + "\x00" + keys[0]))
	return "push2-" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:15]))
}

func domainOf(account string) string {
	j, err := jid.Parse(account)
	if err != nil {
		return ""
	}
	return j.Domainpart()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Facts returns the stanza's facts, computed once per event and shared by
// every profile that asks.
func (in *MatchInput) Facts() *Facts {
	if in.facts == nil {
		in.facts = Inspect(in.Stanza, in.Context)
	}
	return in.facts
}
