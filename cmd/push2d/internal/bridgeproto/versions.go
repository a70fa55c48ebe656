package bridgeproto

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/push2/push2/engine/stanza"
)

// Protocol versions (docs/bridge-protocol.md "Versions"). Every version
// uses the namespace urn:push2:bridge:1 (NS): a later version only adds
// behaviour that both sides agree on. push2d lists the versions it speaks
// in its <features/> (versions="1 2"); the bridge declares the one it
// speaks in its answer, <bridge version="2"/>. A bridge that declares
// none (one older than version 2) speaks version 1.
const (
	// Version1 is the baseline every bridge speaks: one <ack/> per event
	// message.
	Version1 = 1
	// Version2 batches acks: push2d acknowledges up to MaxAcksPerMessage
	// events in one message, at most AckFlushDelay after the first of them
	// was done.
	Version2 = 2
)

// Versions are the protocol versions this push2d speaks, oldest first.
var Versions = []int{Version1, Version2}

// MaxAcksPerMessage and AckFlushDelay bound a batch of acks (version 2):
// a batch goes out when it holds MaxAcksPerMessage acks or AckFlushDelay
// after its first ack, whichever comes first.
const (
	MaxAcksPerMessage = 64
	AckFlushDelay     = 10 * time.Millisecond
)

// versionsAttr renders Versions for <features versions="…"/>.
func versionsAttr() string {
	s := make([]string, len(Versions))
	for i, v := range Versions {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, " ")
}

// parseVersions reads a versions attribute ("1 2"); unreadable entries
// are skipped. An empty attribute (an older push2d) means version 1.
func parseVersions(attr string) []int {
	var out []int
	for _, f := range strings.Fields(attr) {
		if v, err := strconv.Atoi(f); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return []int{Version1}
	}
	return out
}

// declaredVersion reads the version a bridge's <bridge/> declares: absent
// is Version1. ok is false for a version this push2d does not speak (or
// an unreadable one).
func declaredVersion(el *stanza.Element) (v int, ok bool) {
	attr := el.AttrValue("version")
	if attr == "" {
		return Version1, true
	}
	n, err := strconv.Atoi(attr)
	if err != nil {
		return 0, false
	}
	for _, known := range Versions {
		if n == known {
			return n, true
		}
	}
	return n, false
}

// batchesAcks reports whether domain's bridge takes several acks in one
// message: it declared version 2 or later on this connection.
func (s *Service) batchesAcks(domain string) bool {
	s.routing.mu.Lock()
	defer s.routing.mu.Unlock()
	return s.routing.versions[domain] >= Version2
}

// ackBatches holds the acks not sent yet, per domain (version 2).
type ackBatches struct {
	mu      sync.Mutex
	pending map[string][]Ack // domain → acks, in the order the events were done
	timers  map[string]*time.Timer
}

// queueAck adds a to domain's batch, and sends the batch at once if it is
// full; otherwise a timer sends it AckFlushDelay after its first ack. The
// ack counts as in flight (Wait) until its batch is sent.
func (s *Service) queueAck(domain string, a Ack) {
	s.inflight.Add(1)
	b := &s.acks
	b.mu.Lock()
	if b.pending == nil {
		b.pending, b.timers = map[string][]Ack{}, map[string]*time.Timer{}
	}
	b.pending[domain] = append(b.pending[domain], a)
	if len(b.pending[domain]) < MaxAcksPerMessage {
		if b.timers[domain] == nil {
			b.timers[domain] = time.AfterFunc(AckFlushDelay, func() { s.flushAcks(domain) })
		}
		b.mu.Unlock()
		return
	}
	batch := s.takeAcks(domain)
	b.mu.Unlock()
	s.sendAcks(domain, batch)
}

// takeAcks removes domain's batch and its timer; b.mu is held.
func (s *Service) takeAcks(domain string) []Ack {
	b := &s.acks
	batch := b.pending[domain]
	delete(b.pending, domain)
	if t := b.timers[domain]; t != nil {
		t.Stop()
		delete(b.timers, domain)
	}
	return batch
}

func (s *Service) flushAcks(domain string) {
	s.acks.mu.Lock()
	batch := s.takeAcks(domain)
	s.acks.mu.Unlock()
	s.sendAcks(domain, batch)
}

// sendAcks sends batch in one message. If it cannot be sent (the stream is
// down), the bridge replays the events and push2d's dedupe recognizes them.
func (s *Service) sendAcks(domain string, batch []Ack) {
	if len(batch) == 0 {
		return
	}
	defer s.inflight.Add(-len(batch))
	m := stanza.NewElement(stanza.NSClient, "message", "from", s.cfg.JID, "to", domain, "id", NewID())
	for _, a := range batch {
		m.Append(a.Element())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.send(ctx, m); err != nil {
		s.log.Warn("could not acknowledge events", "count", len(batch), "err", err)
	}
}
