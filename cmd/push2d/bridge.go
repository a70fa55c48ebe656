package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"mellium.im/xmpp"

	"github.com/push2/push2/cmd/push2d/internal/bridgeproto"
	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pgstore"
	"github.com/push2/push2/engine/stanza"
)

// daemon is push2d: the engine behind a component connection. The bridge
// protocol itself is bridgeproto's; the daemon owns the connection (conn.go),
// the metrics and the logs of the outbox.
type daemon struct {
	cfg     Config
	eng     *engine.Engine
	log     *slog.Logger
	metrics *metrics
	bridge  *bridgeproto.Service
	relay   *directRelay // nil without [relay]
	// dbHealth reads the PostgreSQL store's state for /healthz (nil with
	// another store kind).
	dbHealth func() pgstore.Health

	mu   sync.RWMutex
	sess *xmpp.Session // nil while disconnected
}

func newDaemon(cfg Config, eng *engine.Engine, log *slog.Logger, m *metrics) *daemon {
	d := &daemon{cfg: cfg, eng: eng, log: log, metrics: m}
	d.bridge = bridgeproto.New(bridgeproto.Config{
		JID:      cfg.Component.JID,
		Domains:  cfg.Component.Domains,
		Engine:   eng,
		Sender:   rawSender{d},
		Workers:  cfg.Engine.Workers,
		Logger:   log,
		Observer: bridgeObserver{m},
		// The bridges send nothing for accounts without registrations.
		AccountList: true,
	})
	eng.Outbox().Observe = d.observeOutbox
	// A notification to the bridge counts as sent once the bridge says it
	// routed it (if the bridge says it confirms); push2d's own relay
	// reports by its HTTP answer.
	eng.Outbox().AwaitRouted = func(e engine.OutboxEntry) bool {
		return !d.relay.serves(e.To) && d.bridge.AwaitRouted(e)
	}
	eng.Registry().Subscribe(func([]engine.ProfileInfo) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.bridge.AnnounceFeatures(ctx)
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

// send writes one stanza to the server: the bridge protocol's Sender.
func (d *daemon) send(ctx context.Context, el *stanza.Element) error {
	s := d.session()
	if s == nil {
		return bridgeproto.ErrNotConnected
	}
	// mellium v0.22 turns a context's end into a write deadline from a
	// goroutine that can fire after Send returned and break a concurrent
	// write of another goroutine. Writes to the local server are short;
	// they run without a context deadline.
	return s.Send(context.WithoutCancel(ctx), el.TokenReader())
}

// rawSender is the daemon's bridgeproto.RawSender.
type rawSender struct{ d *daemon }

func (r rawSender) Send(ctx context.Context, el *stanza.Element) error { return r.d.send(ctx, el) }
func (r rawSender) SendRaw(ctx context.Context, b []byte) error        { return r.d.sendRaw(ctx, b) }

// sendRaw writes one serialized stanza to the server. It holds mellium's
// output lock (Session.TokenWriter) while it writes, so that the bytes go
// between two stanzas of the token path, after what that path buffered;
// mellium's encoder keeps no state that the bytes change (the stream's
// start tag was written whole).
func (d *daemon) sendRaw(_ context.Context, b []byte) error {
	s := d.session()
	if s == nil {
		return bridgeproto.ErrNotConnected
	}
	w := s.TokenWriter()
	defer w.Close()
	if err := w.Flush(); err != nil { // also: the output stream is closed
		return err
	}
	_, err := s.Conn().Write(b)
	return err
}

// deliver is the outbox's Sender: notifications to push2d's own relay go
// to it directly, the others to the bridge of the account's domain.
func (d *daemon) deliver(ctx context.Context, e engine.OutboxEntry) error {
	if d.relay.serves(e.To) {
		return d.relay.deliver(ctx, e)
	}
	return d.bridge.Deliver(ctx, e)
}

// observeOutbox turns outbox events into metrics and logs.
func (d *daemon) observeOutbox(ev engine.OutboxEvent, e engine.OutboxEntry, detail string) {
	d.metrics.outbox.WithLabelValues(string(ev)).Inc()
	switch ev {
	case engine.OutboxSent:
		d.relay.recorded(e.ID)
		// Debug, not info: one line per push was 4% of push2d's CPU per
		// pushed message (issue 12 goal 2) and as much again in the
		// journal; push2_outbox_total{event="sent"} counts them.
		d.log.Debug("push sent", "account", e.Account, "registration", e.Reg, "service", e.To, "id", e.ID, "attempt", e.Attempts)
	case engine.OutboxRetry:
		d.log.Info("push will be retried", "account", e.Account, "registration", e.Reg, "id", e.ID, "condition", detail, "at", e.Due.Format(time.RFC3339))
	case engine.OutboxDropped:
		d.log.Warn("push given up", "account", e.Account, "registration", e.Reg, "id", e.ID, "condition", detail, "attempts", e.Attempts)
	}
}

// bridgeObserver turns what the bridge protocol does into metrics.
type bridgeObserver struct{ m *metrics }

func (o bridgeObserver) Refused()                     { o.m.refused.Inc() }
func (o bridgeObserver) Event()                       { o.m.events.Inc() }
func (o bridgeObserver) Enabled(result string)        { o.m.enables.WithLabelValues(result).Inc() }
func (o bridgeObserver) Disabled()                    { o.m.disables.Inc() }
func (o bridgeObserver) Evaluated(d time.Duration)    { o.m.evaluation.Observe(d.Seconds()) }
func (o bridgeObserver) Outcome(c engine.OutcomeCode) { o.m.outcomes.WithLabelValues(string(c)).Inc() }
func (o bridgeObserver) DeliveryError(typ, cond string) {
	o.m.deliveryErrors.WithLabelValues(typ, cond).Inc()
}
func (o bridgeObserver) IgnoredReport(reason string) {
	o.m.ignoredReports.WithLabelValues(reason).Inc()
}
