package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/engine/stanza"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/push2/push2/engine"
)

// NSBridge is the bridge protocol's namespace (docs/bridge-protocol.md).
// The version is part of the namespace: a bridge speaking another version
// gets feature-not-implemented and says so in its log.
const NSBridge = "urn:push2:bridge:1"

// daemon is push2d: the engine behind a component connection.
type daemon struct {
	cfg     Config
	eng     *engine.Engine
	log     *slog.Logger
	metrics *metrics

	mu   sync.RWMutex
	sess *xmpp.Session // nil while disconnected

	work chan struct{} // bounds concurrent evaluations
}

func newDaemon(cfg Config, eng *engine.Engine, log *slog.Logger, m *metrics) *daemon {
	d := &daemon{cfg: cfg, eng: eng, log: log, metrics: m, work: make(chan struct{}, cfg.Engine.Workers)}
	eng.Outbox().Observe = d.observeOutbox
	eng.Registry().Subscribe(func([]engine.ProfileInfo) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.announceFeatures(ctx)
	})
	return d
}

func (d *daemon) session() *xmpp.Session {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.sess
}

func (d *daemon) setSession(s *xmpp.Session) {
	d.mu.Lock()
	d.sess = s
	d.mu.Unlock()
	if s != nil {
		d.metrics.connected.Set(1)
	} else {
		d.metrics.connected.Set(0)
	}
}

var errNotConnected = errors.New("not connected to the XMPP server")

// send writes one stanza to the server.
func (d *daemon) send(ctx context.Context, el *stanza.Element) error {
	s := d.session()
	if s == nil {
		return errNotConnected
	}
	// mellium v0.22 turns a context's end into a write deadline from a
	// goroutine that can fire after Send returned and break a concurrent
	// write of another goroutine. Writes to the local server are short;
	// they run without a context deadline.
	return s.Send(context.WithoutCancel(ctx), el.TokenReader())
}

// handle is the component session's stanza handler. It reads the whole
// stanza, checks who sent it and dispatches; slow work runs in a goroutine
// so the stream keeps being read.
func (d *daemon) handle(t xml.TokenReader, start *xml.StartElement) error {
	st, err := stanza.ReadElement(*start, t)
	if err != nil {
		d.log.Warn("unreadable stanza from the server", "err", err)
		return nil // the stream stays up; the stanza is dropped
	}
	from, err := jid.Parse(st.AttrValue("from"))
	if err != nil || !slices.Contains(d.cfg.Component.Domains, from.String()) {
		d.metrics.refused.Inc()
		d.log.Warn("stanza from an address that is not a configured server domain", "from", st.AttrValue("from"), "kind", st.Name.Local)
		if st.Name.Local == "iq" && (st.AttrValue("type") == "get" || st.AttrValue("type") == "set") {
			d.reply(st, nil, stanza.NotAllowed("only the configured XMPP server domains may use this service"))
		}
		return nil
	}
	switch st.Name.Local {
	case "iq":
		go d.handleIQ(st)
	case "message":
		d.handleMessage(st)
	}
	return nil
}

func (d *daemon) handleIQ(iq *stanza.Element) {
	typ := iq.AttrValue("type")
	if typ != "get" && typ != "set" {
		return // results and errors: we send no IQs that need them
	}
	if len(iq.Children) != 1 {
		d.reply(iq, nil, stanza.BadRequest("an IQ must have exactly one child"))
		return
	}
	req := iq.Children[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch {
	case req.Is(NSBridge, "enable") && typ == "set":
		payload, err := d.enable(ctx, req)
		d.reply(iq, payload, err)
	case req.Is(NSBridge, "disable") && typ == "set":
		d.reply(iq, nil, d.disable(ctx, req))
	case req.Is(NSBridge, "features") && typ == "get":
		d.reply(iq, d.featuresElement(), nil)
	case req.Name.Space == stanza.NSDiscoInfo && typ == "get":
		q := stanza.NewElement(stanza.NSDiscoInfo, "query")
		q.Append(stanza.NewElement(stanza.NSDiscoInfo, "identity", "category", "component", "type", "generic", "name", "push2"))
		q.Append(stanza.NewElement(stanza.NSDiscoInfo, "feature", "var", stanza.NSDiscoInfo))
		q.Append(stanza.NewElement(stanza.NSDiscoInfo, "feature", "var", NSBridge))
		d.reply(iq, q, nil)
	case strings.HasPrefix(req.Name.Space, "urn:push2:bridge:"):
		d.reply(iq, nil, stanza.FeatureNotImplemented("this push2d speaks %s; upgrade the bridge module", NSBridge))
	default:
		d.reply(iq, nil, stanza.ServiceUnavailable())
	}
}

// enable handles <enable xmlns='urn:push2:bridge:1' account=… registration=…>
// wrapping the client's <enable xmlns='urn:xmpp:push2:0'/>, or the <enable/>
// of another push protocol (XEP-0357's <enable xmlns='urn:xmpp:push:0'/>),
// which the engine hands to its EnableParser. The result carries the
// registration id, which the bridge remembers on the session.
func (d *daemon) enable(ctx context.Context, req *stanza.Element) (*stanza.Element, error) {
	account, id := req.AttrValue("account"), req.AttrValue("registration")
	inner := req.Child(stanza.NSPush2, "enable")
	if inner == nil {
		inner = foreignChild(req, "enable")
	}
	if inner == nil {
		return nil, stanza.BadRequest("missing <enable xmlns='urn:xmpp:push2:0'/>")
	}
	if err := d.checkDomain(account); err != nil {
		return nil, err
	}
	r, evicted, err := d.eng.Enable(ctx, account, id, inner)
	if err != nil {
		se := engine.AsStanzaError(err)
		d.metrics.enables.WithLabelValues(string(se.Condition)).Inc()
		d.log.Info("enable refused", "account", account, "registration", id, "condition", se.Condition, "text", se.Text)
		return nil, se
	}
	d.metrics.enables.WithLabelValues("ok").Inc()
	d.log.Info("enabled", "account", r.Account, "registration", r.ID, "service", r.Service, "matches", len(r.Matches), "evicted", len(evicted))
	return stanza.NewElement(NSBridge, "registered", "id", r.ID), nil
}

func (d *daemon) disable(ctx context.Context, req *stanza.Element) error {
	account, id := req.AttrValue("account"), req.AttrValue("registration")
	if err := d.checkDomain(account); err != nil {
		return err
	}
	if foreign := foreignChild(req, "disable"); foreign != nil {
		n, err := d.eng.DisableForeign(ctx, account, foreign)
		if err != nil {
			return err
		}
		d.metrics.disables.Inc()
		d.log.Info("disabled registrations", "account", account, "protocol", foreign.Name.Space, "app_server", foreign.AttrValue("jid"), "count", n)
		return nil
	}
	ok, err := d.eng.Disable(ctx, account, id)
	if err != nil {
		return err
	}
	d.metrics.disables.Inc()
	d.log.Info("disabled", "account", account, "registration", id, "existed", ok)
	return nil
}

// foreignChild returns req's first child called local in a namespace other
// than Push 2.0's: another push protocol's <enable/> or <disable/>.
func foreignChild(req *stanza.Element, local string) *stanza.Element {
	for _, c := range req.Children {
		if c.Name.Local == local && c.Name.Space != stanza.NSPush2 && c.Name.Space != NSBridge {
			return c
		}
	}
	return nil
}

// checkDomain refuses accounts outside the configured domains: a bridge
// speaks only for its own users.
func (d *daemon) checkDomain(account string) error {
	j, err := jid.Parse(account)
	if err != nil || j.Localpart() == "" {
		return stanza.BadRequest("the account is not a valid bare JID")
	}
	if !slices.Contains(d.cfg.Component.Domains, j.Domainpart()) {
		return stanza.NotAllowed("the account is not on a configured server domain")
	}
	return nil
}

func (d *daemon) reply(iq *stanza.Element, payload *stanza.Element, err error) {
	res := stanza.NewElement(stanza.NSClient, "iq", "to", iq.AttrValue("from"), "from", iq.AttrValue("to"), "id", iq.AttrValue("id"), "type", "result")
	if err != nil {
		res.SetAttr("type", "error")
		res.Append(engine.AsStanzaError(err).Element())
	} else if payload != nil {
		res.Append(payload)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.send(ctx, res); err != nil {
		d.log.Warn("could not answer an IQ", "id", iq.AttrValue("id"), "err", err)
	}
}

func (d *daemon) featuresElement() *stanza.Element {
	f := stanza.NewElement(NSBridge, "features")
	for _, v := range d.eng.Registry().Features() {
		f.Append(stanza.NewElement(NSBridge, "feature", "var", v))
	}
	return f
}

// announceFeatures tells every bridge the current disco feature list; it is
// called on connect and whenever the profiles change.
func (d *daemon) announceFeatures(ctx context.Context) {
	for _, domain := range d.cfg.Component.Domains {
		msg := stanza.NewElement(stanza.NSClient, "message", "to", domain, "from", d.cfg.Component.JID, "id", newID())
		msg.Append(d.featuresElement())
		if err := d.send(ctx, msg); err != nil && !errors.Is(err, errNotConnected) {
			d.log.Warn("could not announce features", "domain", domain, "err", err)
		}
	}
}

func (d *daemon) handleMessage(msg *stanza.Element) {
	if msg.AttrValue("type") == "error" {
		d.log.Warn("the server bounced a message of ours", "id", msg.AttrValue("id"))
		return
	}
	for _, c := range msg.Children {
		switch {
		case c.Is(NSBridge, "event"):
			d.work <- struct{}{} // back-pressure: the stream is read no faster than evaluations finish
			go func(ev *stanza.Element) {
				defer func() { <-d.work }()
				d.handleEvent(msg.AttrValue("from"), ev)
			}(c)
		case c.Is(NSBridge, "activity"):
			d.eng.NoteActivity(c.AttrValue("account"), c.AttrValue("registration"), time.Now())
		case c.Is(NSBridge, "delivery-error"):
			d.deliveryError(c)
		case c.Is(NSBridge, "delivered"):
			if err := d.eng.Outbox().Confirm(c.AttrValue("id"), c.AttrValue("from")); err != nil {
				d.ignoredReport(err)
			}
		}
	}
}

// handleEvent evaluates one stanza event, sends the notifications through
// the bridge and acknowledges the event.
func (d *daemon) handleEvent(domain string, ev *stanza.Element) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	account := ev.AttrValue("account")
	if err := d.checkDomain(account); err != nil {
		d.log.Warn("event refused", "account", account, "err", err)
		d.ack(ctx, domain, ev.AttrValue("id"), err)
		return
	}
	var st *stanza.Element
	var only, live []string
	for _, c := range ev.Children {
		switch {
		case c.Is(NSBridge, "only"):
			only = append(only, c.AttrValue("id"))
		case c.Is(NSBridge, "live"):
			live = append(live, c.AttrValue("id"))
		case c.Name.Space == stanza.NSClient && st == nil:
			st = c
		}
	}
	trigger, ok := engine.ParseTrigger(ev.AttrValue("trigger"))
	if st == nil || !ok {
		d.log.Warn("malformed event from the bridge", "account", account, "trigger", ev.AttrValue("trigger"))
		d.ack(ctx, domain, ev.AttrValue("id"), stanza.BadRequest("an event needs a known trigger and a stanza"))
		return
	}
	regs, err := d.targets(ctx, account, only, live)
	if err != nil {
		d.log.Error("event: registrations", "account", account, "err", err)
		return // no ack: the bridge replays it
	}
	res, err := d.eng.Evaluate(ctx, &engine.Event{
		Stanza:        st,
		Registrations: regs,
		Context: engine.Context{
			Account:   account,
			Trigger:   trigger,
			ArchiveID: ev.AttrValue("archive-id"),
			ArchiveBy: ev.AttrValue("archive-by"),
			Nick:      ev.AttrValue("nick"),
		},
	})
	if err != nil {
		d.log.Warn("event not evaluated", "account", account, "err", err)
		d.ack(ctx, domain, ev.AttrValue("id"), err)
		return
	}
	d.metrics.evaluation.Observe(time.Since(begin).Seconds())
	for _, o := range res.Outcomes {
		d.metrics.outcomes.WithLabelValues(string(o.Code)).Inc()
		d.log.Debug("outcome", "account", o.Reg.Account, "registration", o.Reg.ID, "trigger", trigger, "pushed", o.Pushed, "reason", o.Reason)
	}
	// The notifications are in the outbox, durably: the event is done.
	// The outbox delivers them (d.deliver).
	d.ack(ctx, domain, ev.AttrValue("id"), nil)
}

// targets turns the bridge's view of sessions into the registrations to
// evaluate: the listed ones (or all), minus those whose session is live.
func (d *daemon) targets(ctx context.Context, account string, only, live []string) ([]string, error) {
	if len(only) == 0 && len(live) == 0 {
		return nil, nil
	}
	var ids []string
	if len(only) > 0 {
		ids = only
	} else {
		regs, err := d.eng.Registrations(ctx, account)
		if err != nil {
			return nil, err
		}
		for _, r := range regs {
			ids = append(ids, r.ID)
		}
	}
	out := []string{}
	for _, id := range ids {
		if !slices.Contains(live, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// deliver is the outbox's Sender: it hands a notification to the bridge of
// the account's domain, which sends it from that domain to the push
// service.
func (d *daemon) deliver(ctx context.Context, e engine.OutboxEntry) error {
	j, err := jid.Parse(e.Account)
	if err != nil {
		return err
	}
	n, err := stanza.Parse([]byte(e.Stanza))
	if err != nil {
		return err
	}
	wrap := stanza.NewElement(stanza.NSClient, "message", "to", j.Domainpart(), "from", d.cfg.Component.JID, "id", newID())
	push := stanza.NewElement(NSBridge, "push", "account", e.Account, "registration", e.Reg)
	push.Append(n)
	wrap.Append(push)
	return d.send(ctx, wrap)
}

// observeOutbox turns outbox events into metrics and logs.
func (d *daemon) observeOutbox(ev engine.OutboxEvent, e engine.OutboxEntry, detail string) {
	d.metrics.outbox.WithLabelValues(string(ev)).Inc()
	switch ev {
	case engine.OutboxSent:
		d.log.Info("push sent", "account", e.Account, "registration", e.Reg, "service", e.To, "id", e.ID, "attempt", e.Attempts)
	case engine.OutboxRetry:
		d.log.Info("push will be retried", "account", e.Account, "registration", e.Reg, "id", e.ID, "condition", detail, "at", e.Due.Format(time.RFC3339))
	case engine.OutboxDropped:
		d.log.Warn("push given up", "account", e.Account, "registration", e.Reg, "id", e.ID, "condition", detail, "attempts", e.Attempts)
	}
}

func (d *daemon) ack(ctx context.Context, domain, id string, err error) {
	if id == "" {
		return
	}
	msg := stanza.NewElement(stanza.NSClient, "message", "to", domain, "from", d.cfg.Component.JID, "id", newID())
	a := stanza.NewElement(NSBridge, "ack", "id", id)
	if err != nil {
		se := engine.AsStanzaError(err)
		a.SetAttr("error", string(se.Condition))
	}
	msg.Append(a)
	if err := d.send(ctx, msg); err != nil {
		d.log.Warn("could not acknowledge an event", "id", id, "err", err)
	}
}

// deliveryError records a push service's error reply to a notification.
func (d *daemon) deliveryError(c *stanza.Element) {
	typ, cond := c.AttrValue("type"), c.AttrValue("condition")
	if typ == "" {
		typ = string(stanza.Cancel)
	}
	if _, err := d.eng.Outbox().DeliveryError(c.AttrValue("id"), c.AttrValue("from"), typ, cond); err != nil {
		d.ignoredReport(err) // the outbox logged it
		return
	}
	d.metrics.deliveryErrors.WithLabelValues(typ, cond).Inc()
	d.log.Warn("push service answered with an error", "id", c.AttrValue("id"), "service", c.AttrValue("from"), "type", typ, "condition", cond)
}

// ignoredReport counts a delivery report that did not count.
func (d *daemon) ignoredReport(err error) {
	reason := "unknown"
	if errors.Is(err, engine.ErrNotFromService) {
		reason = "wrong-sender"
	}
	d.metrics.ignoredReports.WithLabelValues(reason).Inc()
}

func newID() string {
	var b [9]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
