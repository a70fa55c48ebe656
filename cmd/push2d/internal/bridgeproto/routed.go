package bridgeproto

import (
	"context"
	"sync"
	"time"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
)

// A notification counts as sent only once the bridge says it routed it
// (docs/bridge-protocol.md "Routing confirmations"): the bridge declares
// that it confirms with <bridge routed='true'/> (its answer to push2d's
// <features/>), and then confirms the notifications it sent, in batches,
// with <routed/>. push2d keeps the unconfirmed ones and sends them again
// after a reconnection (engine.Outbox.AwaitRouted, Unrouted). A bridge
// that does not declare it (an older one) is trusted as before: handed
// over is sent.

// Element names.
const (
	KindBridge = "bridge" // message, bridge → push2d: what the bridge does
	KindRouted = "routed" // message, bridge → push2d: notifications routed
)

// declareGrace is how long after a connection push2d holds notifications
// for a domain whose bridge has not said yet whether it confirms routing.
const declareGrace = 3 * time.Second

// routing is what push2d knows of the bridges' confirmations on the
// current connection.
type routing struct {
	mu         sync.Mutex
	since      time.Time       // the connection's start; zero while down
	confirming map[string]bool // domain → its bridge confirms routing
	versions   map[string]int  // domain → the protocol version its bridge declared
}

// Routed is a batch of routing confirmations: notification ids.
type Routed struct{ IDs []string }

// Element renders the batch.
func (r Routed) Element() *stanza.Element {
	el := stanza.NewElement(NS, KindRouted)
	for _, id := range r.IDs {
		el.Append(stanza.NewElement(NS, "n", "id", id))
	}
	return el
}

// ParseRouted reads <routed/>.
func ParseRouted(el *stanza.Element) (Routed, error) {
	if err := expect(el, KindRouted); err != nil {
		return Routed{}, err
	}
	var r Routed
	for _, c := range el.Children {
		if id := c.AttrValue("id"); c.Is(NS, "n") && id != "" {
			r.IDs = append(r.IDs, id)
		}
	}
	return r, nil
}

// Connected tells the service a component connection is up: no bridge has
// declared anything on it yet.
func (s *Service) Connected() {
	s.routing.mu.Lock()
	s.routing.since = time.Now()
	s.routing.confirming = map[string]bool{}
	s.routing.versions = map[string]int{}
	s.routing.mu.Unlock()
}

// Disconnected tells the service the connection is down: what the bridges
// had not confirmed is sent again on the next one.
func (s *Service) Disconnected() {
	s.routing.mu.Lock()
	s.routing.since = time.Time{}
	s.routing.confirming = nil
	s.routing.versions = nil
	s.routing.mu.Unlock()
	s.eng.Outbox().Unrouted()
}

// AwaitRouted reports whether the bridge of the entry's account confirms
// routing: the outbox then counts the notification as sent only on its
// confirmation.
func (s *Service) AwaitRouted(e engine.OutboxEntry) bool {
	s.routing.mu.Lock()
	defer s.routing.mu.Unlock()
	return s.routing.confirming[domainOf(e.Account)]
}

// ready reports whether notifications may go to domain's bridge now: it
// has declared what it does, or the connection is older than declareGrace
// (a bridge that declares nothing).
func (s *Service) ready(domain string) bool {
	s.routing.mu.Lock()
	defer s.routing.mu.Unlock()
	if s.routing.confirming == nil {
		return true // not connected (the Sender says so), or Connected never called
	}
	_, declared := s.routing.confirming[domain]
	return declared || time.Since(s.routing.since) >= declareGrace
}

// declared records a bridge's <bridge/>: whether it confirms routing, and
// the protocol version it speaks. A version this push2d does not speak is
// refused (logged, and answered with an error message naming the versions
// it speaks); the bridge is then served as version 1, the baseline.
func (s *Service) declared(domain string, el *stanza.Element) {
	version, ok := declaredVersion(el)
	if !ok {
		s.log.Error("the bridge declared a bridge protocol version this push2d does not speak; serving it as version 1 (upgrade push2d, or run a bridge that speaks one of push2d's versions)",
			"domain", domain, "declared", el.AttrValue("version"), "speaks", versionsAttr())
		s.refuseVersion(domain, el)
		version = Version1
	}
	s.routing.mu.Lock()
	if s.routing.confirming != nil {
		s.routing.confirming[domain] = el.AttrValue("routed") == "true"
	}
	if s.routing.versions == nil {
		s.routing.versions = map[string]int{} // Connected not called (tests)
	}
	s.routing.versions[domain] = version
	s.routing.mu.Unlock()
	s.log.Debug("bridge declared", "domain", domain, "routed", el.AttrValue("routed"), "version", version)
}

// refuseVersion answers a <bridge/> declaring an unknown version with a
// <message type="error"/>: feature-not-implemented, naming the versions
// push2d speaks.
func (s *Service) refuseVersion(domain string, el *stanza.Element) {
	m := stanza.NewElement(stanza.NSClient, "message", "from", s.cfg.JID, "to", domain, "id", NewID(), "type", "error")
	m.Append(stanza.NewElement(NS, KindBridge, "version", el.AttrValue("version")))
	m.Append(stanza.FeatureNotImplemented("bridge protocol version %q is not one this push2d speaks (%s)", el.AttrValue("version"), versionsAttr()).Element())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.send(ctx, m); err != nil {
		s.log.Warn("could not refuse the bridge's version", "domain", domain, "err", err)
	}
}

// routed records a bridge's confirmations.
func (s *Service) routed(el *stanza.Element) {
	r, err := ParseRouted(el)
	if err != nil {
		s.log.Warn("malformed routing confirmation from the bridge", "err", err)
		return
	}
	s.eng.Outbox().RoutedAll(r.IDs)
}
