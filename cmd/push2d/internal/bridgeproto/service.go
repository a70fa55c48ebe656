package bridgeproto

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// Sender writes one stanza to the component stream. It returns
// ErrNotConnected (or an error wrapping it) while there is no stream; the
// outbox then tries the notification again later. Send is called from
// several goroutines at once.
type Sender interface {
	Send(ctx context.Context, st *stanza.Element) error
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, st *stanza.Element) error

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, st *stanza.Element) error { return f(ctx, st) }

// ErrNotConnected is what a Sender returns while the stream is down.
var ErrNotConnected = errors.New("not connected to the XMPP server")

// Observer is told what the service did, for metrics. Its methods must not
// block; labels they get come from small fixed sets (conditions, outcome
// codes), never from user data.
type Observer interface {
	Refused()                            // a stanza from outside the configured domains
	Event()                              // a stanza event came from a bridge
	Enabled(result string)               // "ok" or the error condition
	Disabled()                           // a disable succeeded
	Evaluated(d time.Duration)           // one event evaluated
	Outcome(code engine.OutcomeCode)     // one registration's outcome in it
	DeliveryError(typ, condition string) // a push service's error that counted
	IgnoredReport(reason string)         // "unknown" or "wrong-sender"
}

// NopObserver observes nothing; embed it to observe some things.
type NopObserver struct{}

func (NopObserver) Refused()                     {}
func (NopObserver) Event()                       {}
func (NopObserver) Enabled(string)               {}
func (NopObserver) Disabled()                    {}
func (NopObserver) Evaluated(time.Duration)      {}
func (NopObserver) Outcome(engine.OutcomeCode)   {}
func (NopObserver) DeliveryError(string, string) {}
func (NopObserver) IgnoredReport(string)         {}

// Config configures a Service.
type Config struct {
	// JID is the component's address: the from of everything push2d
	// sends.
	JID string
	// Domains are the server domains whose bridges may talk to push2d;
	// accounts in requests must be on one of them too.
	Domains []string
	Engine  *engine.Engine
	Sender  Sender
	// Workers bounds the events evaluated at once (push2d: its
	// engine.workers setting; zero means one at a time): Handle blocks
	// while that many are in flight, so the stream is read no faster than
	// evaluations finish.
	Workers  int
	Logger   *slog.Logger // default slog.Default()
	Observer Observer     // default NopObserver
	// AccountList: tell the bridges which accounts have registrations
	// (AnnounceAccounts, and every change as the engine makes it), so
	// that they send nothing for the others. push2d sets it.
	AccountList bool
}

// requestTimeout bounds the work for one IQ or event.
const requestTimeout = 30 * time.Second

// Service serves the bridge protocol for one engine.
type Service struct {
	cfg      Config
	eng      *engine.Engine
	log      *slog.Logger
	obs      Observer
	events   chan eventJob // to the event workers (workers.go)
	startW   sync.Once
	inflight sync.WaitGroup
	// accountsMu orders the account list and the changes on the stream.
	accountsMu sync.Mutex
	routing    routing
	acks       ackBatches // version 2's batched acks (versions.go)
	// normalDomains are the configured domains that are in their
	// normalized form (jid.Parse gives them back unchanged): an address
	// equal to one of them needs no parse to be known as that domain.
	normalDomains []string
}

// New returns a service; it sends nothing until asked.
func New(cfg Config) *Service {
	cfg.Workers = max(cfg.Workers, 1)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	s := &Service{cfg: cfg, eng: cfg.Engine, log: cfg.Logger, obs: cfg.Observer, events: make(chan eventJob)}
	for _, d := range cfg.Domains {
		if j, err := jid.Parse(d); err == nil && j.String() == d {
			s.normalDomains = append(s.normalDomains, d)
		}
	}
	if cfg.AccountList {
		cfg.Engine.OnAccountChange(s.accountChanged)
	}
	return s
}

// Wait returns when every IQ and event being handled is done.
func (s *Service) Wait() { s.inflight.Wait() }

func (s *Service) send(ctx context.Context, st *stanza.Element) error {
	return s.cfg.Sender.Send(ctx, st)
}

// HandleXML reads one stanza from the component stream (start and the
// tokens after it) and handles it. A stanza that cannot be read (over
// stanza.ReadElement's limits, a duplicate attribute) is still answered
// from its outline (answerUnreadable): an IQ request with an error, an
// event with an ack naming the error. The error is nil so the stream stays
// up; the caller skips what is left of the stanza.
func (s *Service) HandleXML(t xml.TokenReader, start *xml.StartElement) error {
	o := &outline{r: t}
	st, err := stanza.ReadElement(*start, o)
	if err != nil {
		s.answerUnreadable(*start, o.child, err)
		return nil
	}
	s.Handle(st)
	return nil
}

// Handle checks who sent st and dispatches it. IQs are served in a
// goroutine; an event waits for a worker (back-pressure) and is then
// evaluated in one; everything else is done before Handle returns.
func (s *Service) Handle(st *stanza.Element) {
	if !s.fromDomain(st) {
		return
	}
	switch st.Name.Local {
	case "iq":
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			s.handleIQ(st)
		}()
	case "message":
		s.handleMessage(st)
	}
}

// fromDomain reports whether st comes from a configured server domain;
// if not, it is counted and logged, and an IQ request is refused.
func (s *Service) fromDomain(st *stanza.Element) bool {
	if slices.Contains(s.normalDomains, st.AttrValue("from")) {
		return true // what jid.Parse would have found (PRECIS was 2% of push2d's CPU per push)
	}
	from, err := jid.Parse(st.AttrValue("from"))
	if err == nil && slices.Contains(s.cfg.Domains, from.String()) {
		return true
	}
	s.obs.Refused()
	s.log.Warn("stanza from an address that is not a configured server domain", "from", st.AttrValue("from"), "kind", st.Name.Local)
	if st.Name.Local == "iq" && (st.AttrValue("type") == "get" || st.AttrValue("type") == "set") {
		s.reply(st, nil, stanza.NotAllowed("only the configured XMPP server domains may use this service"))
	}
	return false
}

func (s *Service) handleIQ(iq *stanza.Element) {
	typ := iq.AttrValue("type")
	if typ != "get" && typ != "set" {
		return // results and errors: push2d sends no IQs that need them
	}
	if len(iq.Children) != 1 {
		s.reply(iq, nil, stanza.BadRequest("an IQ must have exactly one child"))
		return
	}
	req := iq.Children[0]
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	switch {
	case req.Is(NS, KindEnable) && typ == "set":
		payload, err := s.enable(ctx, req)
		s.reply(iq, payload, err)
	case req.Is(NS, KindDisable) && typ == "set":
		s.reply(iq, nil, s.disable(ctx, req))
	case req.Is(NS, KindAccount) && typ == "set":
		s.reply(iq, nil, s.changeAccount(ctx, req))
	case req.Is(NS, KindFeatures) && typ == "get":
		s.reply(iq, s.features().Element(), nil)
	case req.Name.Space == stanza.NSDiscoInfo && typ == "get":
		q := stanza.NewElement(stanza.NSDiscoInfo, "query")
		q.Append(stanza.NewElement(stanza.NSDiscoInfo, "identity", "category", "component", "type", "generic", "name", "push2"))
		q.Append(stanza.NewElement(stanza.NSDiscoInfo, "feature", "var", stanza.NSDiscoInfo))
		q.Append(stanza.NewElement(stanza.NSDiscoInfo, "feature", "var", NS))
		s.reply(iq, q, nil)
	case OtherVersion(req.Name.Space):
		s.reply(iq, nil, stanza.FeatureNotImplemented("this push2d speaks %s; upgrade the bridge module", NS))
	case req.Name.Space == NS:
		s.reply(iq, nil, stanza.FeatureNotImplemented("unknown request <%s/> (type %s) in %s", req.Name.Local, typ, NS))
	default:
		s.reply(iq, nil, stanza.ServiceUnavailable())
	}
}

func (s *Service) enable(ctx context.Context, el *stanza.Element) (*stanza.Element, error) {
	req, err := ParseEnable(el)
	if err != nil {
		return nil, err
	}
	r, err := s.Enable(ctx, req)
	if err != nil {
		return nil, err
	}
	return r.Element(), nil
}

// Enable serves an <enable/> request: the account must be on a configured
// domain; the engine validates and stores the registration. The result
// names the registration, which the bridge remembers on the session (for
// another push protocol it is not the session's id). Errors are
// *stanza.Error, for the client.
func (s *Service) Enable(ctx context.Context, req *Enable) (Registered, error) {
	if err := s.checkDomain(req.Account); err != nil {
		return Registered{}, err
	}
	r, evicted, err := s.eng.Enable(ctx, req.Account, req.Registration, req.Request)
	if err != nil {
		se := engine.AsStanzaError(err)
		s.obs.Enabled(string(se.Condition))
		s.log.Info("enable refused", "account", req.Account, "registration", req.Registration, "condition", se.Condition, "text", se.Text)
		return Registered{}, se
	}
	s.obs.Enabled("ok")
	s.log.Info("enabled", "account", r.Account, "registration", r.ID, "service", r.Service, "matches", len(r.Matches), "evicted", len(evicted))
	return Registered{ID: r.ID}, nil
}

func (s *Service) disable(ctx context.Context, el *stanza.Element) error {
	req, err := ParseDisable(el)
	if err != nil {
		return err
	}
	return s.Disable(ctx, req)
}

// Disable serves a <disable/> request: Push 2.0's removes the session's
// registration (succeeding if there is none), another protocol's removes
// the registrations its request names.
func (s *Service) Disable(ctx context.Context, req *Disable) error {
	if err := s.checkDomain(req.Account); err != nil {
		return err
	}
	if req.Foreign() {
		n, err := s.eng.DisableForeign(ctx, req.Account, req.Request)
		if err != nil {
			return err
		}
		s.obs.Disabled()
		s.log.Info("disabled registrations", "account", req.Account, "protocol", req.Request.Name.Space, "app_server", req.Request.AttrValue("jid"), "count", n)
		return nil
	}
	ok, err := s.eng.Disable(ctx, req.Account, req.Registration)
	if err != nil {
		return err
	}
	s.obs.Disabled()
	s.log.Info("disabled", "account", req.Account, "registration", req.Registration, "existed", ok)
	return nil
}

// checkDomain refuses accounts outside the configured domains: a bridge
// speaks only for its own users.
func (s *Service) checkDomain(account string) error {
	j, err := jid.Parse(account)
	if err != nil || j.Localpart() == "" {
		return stanza.BadRequest("the account is not a valid bare JID")
	}
	if !slices.Contains(s.cfg.Domains, j.Domainpart()) {
		return stanza.NotAllowed("the account is not on a configured server domain")
	}
	return nil
}

func (s *Service) reply(iq *stanza.Element, payload *stanza.Element, err error) {
	res := stanza.NewElement(stanza.NSClient, "iq", "to", iq.AttrValue("from"), "from", iq.AttrValue("to"), "id", iq.AttrValue("id"), "type", "result")
	if err != nil {
		res.SetAttr("type", "error")
		res.Append(engine.AsStanzaError(err).Element())
	} else if payload != nil {
		res.Append(payload)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.send(ctx, res); err != nil {
		s.log.Warn("could not answer an IQ", "id", iq.AttrValue("id"), "err", err)
	}
}

func (s *Service) features() Features {
	limits := DefaultLimits()
	return Features{Vars: s.eng.Registry().Features(), Limits: &limits, DedupeWindow: int(s.eng.Config().DedupeRetention / time.Second), Versions: Versions}
}

// AnnounceFeatures tells every domain's bridge the current disco feature
// list; call it on every (re)connection and whenever the profiles change.
func (s *Service) AnnounceFeatures(ctx context.Context) {
	for _, domain := range s.cfg.Domains {
		if err := s.send(ctx, Message(s.cfg.JID, domain, s.features().Element())); err != nil && !errors.Is(err, ErrNotConnected) {
			s.log.Warn("could not announce features", "domain", domain, "err", err)
		}
	}
}

func (s *Service) handleMessage(msg *stanza.Element) {
	if msg.AttrValue("type") == "error" {
		s.log.Warn("the server bounced a message of ours", "id", msg.AttrValue("id"))
		return
	}
	domain := msg.AttrValue("from")
	for _, c := range msg.Children {
		if c.Name.Space != NS {
			continue
		}
		switch c.Name.Local {
		case KindEvent:
			s.obs.Event()
			s.dispatchEvent(domain, c)
		case KindActivity:
			a, err := ParseActivity(c)
			if err != nil {
				s.log.Warn("malformed activity report from the bridge", "err", err)
				continue
			}
			s.eng.NoteActivity(a.Account, a.Registration, time.Now())
		case KindDeliveryError:
			s.deliveryError(c)
		case KindBridge:
			s.declared(domain, c)
		case KindRouted:
			s.routed(c)
		case KindDelivered:
			d, err := ParseDelivered(c)
			if err == nil {
				err = s.eng.Outbox().Confirm(d.ID, d.From)
			}
			if err != nil {
				s.ignored(c, err)
			}
		default:
			s.log.Warn("unknown message from the bridge", "kind", c.Name.Local)
		}
	}
}

// handleEvent evaluates one stanza event (the notifications go to the
// outbox) and acknowledges it. An event is acked with an error when it is
// refused (malformed, an account elsewhere, not evaluable); it is not acked
// when the registrations could not be read, so that the bridge replays it.
func (s *Service) handleEvent(domain string, el *stanza.Element) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	begin := time.Now()
	account, id := el.AttrValue("account"), el.AttrValue("id")
	if err := s.checkDomain(account); err != nil {
		s.log.Warn("event refused", "account", account, "err", err)
		s.ack(ctx, domain, id, err)
		return
	}
	ev, err := ParseEvent(el)
	if err != nil {
		s.log.Warn("malformed event from the bridge", "account", account, "trigger", el.AttrValue("trigger"), "err", err)
		s.ack(ctx, domain, id, err)
		return
	}
	if ev.Truncated != "" {
		s.log.Info("event about a stanza over the parse limits: evaluated from the outline the bridge sent", "account", account, "trigger", ev.Trigger, "why", ev.Truncated)
	}
	regs, err := ev.Targets(func() ([]string, error) {
		regs, err := s.eng.Registrations(ctx, account)
		ids := make([]string, len(regs))
		for i, r := range regs {
			ids[i] = r.ID
		}
		return ids, err
	})
	if err != nil {
		s.log.Error("event: registrations", "account", account, "err", err)
		return // no ack: the bridge replays it
	}
	event := &engine.Event{
		Stanza:        ev.Stanza,
		Registrations: regs,
		Context: engine.Context{
			Account:   account,
			Trigger:   ev.Trigger,
			ArchiveID: ev.ArchiveID,
			ArchiveBy: ev.ArchiveBy,
			Nick:      ev.Nick,
		},
	}
	res, err := s.eng.Evaluate(ctx, event)
	// A push the store could not record (a database restarting, a disk
	// failing) is not acknowledged as done: evaluate again, with back-off,
	// while the request lasts (the dedupe marks make a registration that
	// was recorded the first time a duplicate the next), then leave the
	// event unacknowledged, so that the bridge replays it.
	for wait := 200 * time.Millisecond; storeFailed(res, err); wait = min(2*wait, 2*time.Second) {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+5*time.Second {
			s.log.Error("event: the store could not record its pushes; not acknowledged, the bridge replays it", "account", account)
			return
		}
		time.Sleep(wait)
		res, err = s.eng.Evaluate(ctx, event)
	}
	if err != nil {
		s.log.Warn("event not evaluated", "account", account, "err", err)
		s.ack(ctx, domain, id, err)
		return
	}
	s.obs.Evaluated(time.Since(begin))
	for _, o := range res.Outcomes {
		s.obs.Outcome(o.Code)
		s.log.Debug("outcome", "account", o.Reg.Account, "registration", o.Reg.ID, "trigger", ev.Trigger, "pushed", o.Pushed, "reason", o.Reason)
	}
	// The notifications are in the outbox, durably: the event is done.
	s.ack(ctx, domain, id, nil)
}

// storeFailed reports whether an evaluation failed on the store: it could
// not read the registrations (Evaluate's only error that is not a bad
// request) or record a push.
func storeFailed(res *engine.Result, err error) bool {
	if err != nil {
		return engine.AsStanzaError(err).Condition != stanza.CondBadRequest
	}
	for _, o := range res.Outcomes {
		if o.Code == engine.OutcomeStoreError {
			return true
		}
	}
	return false
}

// ack acknowledges event id to the bridge of domain; an event without an
// id gets none.
func (s *Service) ack(ctx context.Context, domain, id string, err error) {
	if id == "" {
		return
	}
	a := Ack{ID: id}
	if err != nil {
		a.Error = string(engine.AsStanzaError(err).Condition)
	}
	if s.batchesAcks(domain) {
		s.queueAck(domain, a)
		return
	}
	if err := s.send(ctx, Message(s.cfg.JID, domain, a.Element())); err != nil {
		s.log.Warn("could not acknowledge an event", "id", id, "err", err)
	}
}

// Deliver is the outbox's Sender (engine.Sender): it hands a notification
// to the bridge of the account's domain, which sends it from that domain
// to the push service.
func (s *Service) Deliver(ctx context.Context, e engine.OutboxEntry) error {
	// The account was checked (checkDomain) when its event came: on a
	// configured domain in normalized form it is not parsed again.
	domain := domainOf(e.Account)
	if !slices.Contains(s.normalDomains, domain) || strings.Count(e.Account, "@") != 1 || strings.HasPrefix(e.Account, "@") || strings.Contains(e.Account, "/") {
		j, err := jid.Parse(e.Account)
		if err != nil {
			return fmt.Errorf("%w: the account %.64q is not a JID: %v", engine.ErrUndeliverable, e.Account, err)
		}
		domain = j.Domainpart()
	}
	if !s.ready(domain) {
		// Its bridge has not said yet whether it confirms routing: the
		// notifications of the other domains go on meanwhile.
		return fmt.Errorf("%w: the bridge of %s has not announced itself", engine.ErrNotReady, domain)
	}
	// As the engine stores it (stanza.Element.Marshal), the notification
	// is written into the stream as it is; anything else (an entry from
	// elsewhere, or damaged) is parsed, refused if it is not XML, and
	// encoded anew.
	rs, raw := s.cfg.Sender.(RawSender)
	if raw && strings.HasPrefix(e.Stanza, storedNotificationPrefix) && simpleElement(e.Stanza) {
		return rs.SendRaw(ctx, pushBytes(s.cfg.JID, domain, e.Account, e.Reg, e.Stanza))
	}
	n, err := stanza.Parse([]byte(e.Stanza))
	if err != nil {
		return fmt.Errorf("%w: the stored notification is not XML: %v", engine.ErrUndeliverable, err)
	}
	p := &Push{Account: e.Account, Registration: e.Reg, Notification: n}
	return s.send(ctx, Message(s.cfg.JID, domain, p.Element()))
}

// deliveryError records a push service's error reply to a notification; it
// counts only if it comes from the notification's service.
func (s *Service) deliveryError(c *stanza.Element) {
	de, err := ParseDeliveryError(c)
	if err == nil {
		_, err = s.eng.Outbox().DeliveryError(de.ID, de.From, de.Type, de.Condition)
	}
	if err != nil {
		s.ignored(c, err)
		return
	}
	s.obs.DeliveryError(de.Type, de.Condition)
	s.log.Warn("push service answered with an error", "id", de.ID, "service", de.From, "type", de.Type, "condition", de.Condition)
}

// ignored logs and counts a delivery report that does not count.
func (s *Service) ignored(c *stanza.Element, err error) {
	reason := "unknown"
	if errors.Is(err, engine.ErrNotFromService) {
		reason = "wrong-sender"
	} else if !errors.Is(err, engine.ErrUnknownNotification) {
		reason = "malformed"
	}
	s.obs.IgnoredReport(reason)
	s.log.Info("delivery report ignored", "kind", c.Name.Local, "id", c.AttrValue("id"), "from", c.AttrValue("from"), "why", err)
}
