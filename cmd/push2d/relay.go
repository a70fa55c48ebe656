package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/stanza"
	"github.com/push2/push2/internal/relay"
)

// RelayConfig is [relay]: push2d's Web Push relay (internal/relay,
// docs/relay.md). With a jid, registrations whose <service/> is that JID
// are posted by push2d itself to their Web Push endpoint, without a round
// trip through the XMPP server. The other settings are the relay's
// (relay.Settings).
type RelayConfig struct {
	// JID is the push service address clients name in <service/>.
	JID string `toml:"jid"`
	relay.Settings

	cfg relay.Config
}

func (c *RelayConfig) validate() []error {
	if c.JID == "" {
		if len(c.AllowNetworks) > 0 || c.AllowHTTP || c.CAFile != "" {
			return []error{errors.New("relay: set relay.jid, the push service JID the relay serves")}
		}
		return nil
	}
	var errs []error
	if j, err := jid.Parse(c.JID); err != nil || j.Localpart() != "" || j.Resourcepart() != "" {
		errs = append(errs, errors.New("relay.jid must be a domain JID such as webpush.example.org"))
	} else {
		c.JID = j.String()
	}
	var err error
	if c.cfg, err = c.Settings.Config("relay"); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// directRelay delivers push2d's own notifications to the relay's JID
// straight to the relay library: the outbox hands the notification over,
// the HTTP request runs in the background, and its answer is reported to
// the outbox as the push service's would be (an error, or a confirmation),
// so the delivery policy is the same as for any push service.
type directRelay struct {
	jid   string
	relay *relay.Relay
	eng   *engine.Engine
	slots chan struct{}  // bounds the notifications in flight
	wg    sync.WaitGroup // the requests in flight, which report to the outbox

	mu   sync.Mutex
	sent map[string]chan struct{} // by notification id: closed once the outbox recorded the send
}

func newDirectRelay(cfg RelayConfig, eng *engine.Engine, rc relay.Config) *directRelay {
	r := relay.New(rc)
	return &directRelay{jid: cfg.JID, relay: r, eng: eng, slots: make(chan struct{}, 4*max(cfg.Total, relay.DefaultTotal)), sent: map[string]chan struct{}{}}
}

// serves reports whether a notification to "to" is the relay's.
func (r *directRelay) serves(to string) bool {
	if r == nil {
		return false
	}
	j, err := jid.Parse(to)
	return err == nil && strings.EqualFold(j.Bare().String(), r.jid)
}

// deliver is the outbox's Sender for the relay's notifications. It blocks
// while too many are in flight (back-pressure on the outbox).
func (r *directRelay) deliver(ctx context.Context, e engine.OutboxEntry) error {
	n, err := stanza.Parse([]byte(e.Stanza))
	if err != nil {
		return fmt.Errorf("%w: the stored notification is not XML: %v", engine.ErrUndeliverable, err)
	}
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	sent := make(chan struct{})
	r.mu.Lock()
	r.sent[e.ID] = sent
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer func() { <-r.slots; r.wg.Done() }()
		// On shutdown the request ends early and is reported as a
		// timeout: the outbox keeps the notification for a retry.
		res := r.relay.Push(ctx, n)
		// The report must come after the outbox recorded this attempt
		// (OutboxSent), or it would apply to the previous one.
		select {
		case <-sent:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
		r.mu.Lock()
		if r.sent[e.ID] == sent {
			delete(r.sent, e.ID)
		}
		r.mu.Unlock()
		if res.Err == nil {
			r.eng.Outbox().Confirm(e.ID, e.To)
			return
		}
		r.eng.Outbox().DeliveryError(e.ID, e.To, string(res.Err.Type), string(res.Err.Condition))
	}()
	return nil
}

// wait returns when every request has reported to the outbox; push2d
// calls it before closing the store.
func (r *directRelay) wait() {
	if r != nil {
		r.wg.Wait()
	}
}

// recorded is called for the outbox's OutboxSent event.
func (r *directRelay) recorded(id string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	if ch, ok := r.sent[id]; ok {
		close(ch)
		delete(r.sent, id)
	}
	r.mu.Unlock()
}
